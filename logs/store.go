package logs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

var _ oneoff.LogSink = (*Store)(nil)

// DefaultMaxBytesPerApp is the size an app's log is kept to when Options
// gives none.
const DefaultMaxBytesPerApp = 64 << 20

// minSegmentBytes is the smallest default segment size.
const minSegmentBytes = 64 << 10

// Options configures a Store.
type Options struct {
	// Dir is the root directory; the Store keeps one subdirectory per app.
	Dir string
	// MaxBytesPerApp is the retention by size of each app's log: past it
	// the oldest segments are deleted. Zero means DefaultMaxBytesPerApp.
	MaxBytesPerApp int64
	// SegmentBytes is the size at which a segment file is sealed and the
	// next one started. Zero means MaxBytesPerApp/8, at least 64 KiB.
	SegmentBytes int64
	// Logger hears of the repairs and clean-ups the Store makes; nil
	// discards them.
	Logger *slog.Logger
}

// Store is the app log store: each app's recent lines in append-only
// segment files on disk, which it appends to, reads back, follows and
// trims to a size.
//
// An app's appends are serialized; different apps' run in parallel.
// Readers read the files, never memory, up to what the appends before them
// wrote, so memory stays bounded whatever the size of the logs.
type Store struct {
	dir      string
	maxBytes int64
	segBytes int64
	log      *slog.Logger

	mu     sync.Mutex
	apps   map[string]*appLog
	closed bool
	done   chan struct{} // closed by Close, for followers

	subMu   sync.Mutex // held while calling subscribers
	subs    map[uint64]func([]Line)
	nextSub uint64
}

// Open opens the log store in opts.Dir, creating the directory if needed,
// and cuts any torn last record, which a crash in the middle of an append
// leaves, off each app's log.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open log store: no directory given")
	}
	s := &Store{
		dir:      opts.Dir,
		maxBytes: opts.MaxBytesPerApp,
		segBytes: opts.SegmentBytes,
		log:      opts.Logger,
		apps:     make(map[string]*appLog),
		done:     make(chan struct{}),
		subs:     make(map[uint64]func([]Line)),
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytesPerApp
	}
	if s.segBytes <= 0 {
		s.segBytes = max(s.maxBytes/8, minSegmentBytes)
	}
	s.segBytes = min(s.segBytes, s.maxBytes)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}

	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("open log store %s: %w", s.dir, err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("open log store %s: %w", s.dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || deploy.ValidateAppName(e.Name()) != nil {
			continue
		}
		a := s.newAppLog(e.Name())
		if err := a.load(); err != nil {
			return nil, fmt.Errorf("open log store %s: app %q: %w", s.dir, a.name, err)
		}
		s.apps[a.name] = a
	}
	return s, nil
}

// Close closes the log files; followers return. Appends and reads after
// Close fail with an errdefs.ErrUnavailable error.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	apps := make([]*appLog, 0, len(s.apps))
	for _, a := range s.apps {
		apps = append(apps, a)
	}
	s.mu.Unlock()

	var errs []error
	for _, a := range apps {
		a.mu.Lock()
		a.closed = true
		if a.f != nil {
			if err := a.f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close app %q's log: %w", a.name, err))
			}
			a.f = nil
		}
		a.mu.Unlock()
	}
	return errors.Join(errs...)
}

// errClosed is what the Store's methods return after Close.
func errClosed() error {
	return errdefs.Unavailable("log_store_closed", nil, "the log store is closed")
}

// Apps lists the apps that have a log, sorted.
func (s *Store) Apps() []string {
	s.mu.Lock()
	apps := make([]*appLog, 0, len(s.apps))
	for _, a := range s.apps {
		apps = append(apps, a)
	}
	s.mu.Unlock()

	var names []string
	for _, a := range apps {
		a.mu.Lock()
		if len(a.segs) > 0 {
			names = append(names, a.name)
		}
		a.mu.Unlock()
	}
	slices.Sort(names)
	return names
}

// appBatch is the lines of one app in an Append.
type appBatch struct {
	app   *appLog
	lines []Line
	saved int // how many of lines were written
}

// Append adds lines, possibly of several apps, to their apps' logs, each
// app's lines in the given order. When it returns the lines are written to
// the files, which a crash of the process does not undo (no fsync: a crash
// of the machine may). The Store keeps file order; lines carry no sequence
// number.
//
// A line whose app, stream, source or time cannot be stored makes the whole
// call fail with an errdefs.ErrInvalid error and write nothing. A text that
// is not valid UTF-8 is kept byte for byte.
func (s *Store) Append(ctx context.Context, lines []Line) error {
	if len(lines) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	batches, err := s.group(lines)
	if err != nil {
		return err
	}

	for _, b := range batches { // in app name order, so never a deadlock
		b.app.mu.Lock()
		defer b.app.mu.Unlock()
	}
	var errs []error
	for i := range batches {
		b := &batches[i]
		var err error
		b.saved, err = b.app.append(b.lines)
		if err != nil {
			errs = append(errs, fmt.Errorf("append to app %q's log: %w", b.app.name, err))
		}
	}
	// Still holding the apps' locks, so that subscribers see each app's
	// lines in file order.
	s.publish(lines, batches)
	return errors.Join(errs...)
}

// group checks lines and splits them by app, in app name order.
func (s *Store) group(lines []Line) ([]appBatch, error) {
	for i := range lines {
		if err := checkRecordLine(&lines[i]); err != nil {
			return nil, err
		}
	}
	var batches []appBatch
	if first := lines[0].App; !slices.ContainsFunc(lines, func(l Line) bool { return l.App != first }) {
		batches = []appBatch{{lines: lines}}
	} else {
		index := make(map[string]int)
		for _, l := range lines {
			i, ok := index[l.App]
			if !ok {
				i = len(batches)
				index[l.App] = i
				batches = append(batches, appBatch{})
			}
			batches[i].lines = append(batches[i].lines, l)
		}
		slices.SortFunc(batches, func(a, b appBatch) int { return cmp.Compare(a.lines[0].App, b.lines[0].App) })
	}
	for _, b := range batches {
		if err := deploy.ValidateAppName(b.lines[0].App); err != nil {
			return nil, err
		}
	}
	for i := range batches {
		a, err := s.appLog(batches[i].lines[0].App, true)
		if err != nil {
			return nil, err
		}
		batches[i].app = a
	}
	return batches, nil
}

// publish calls the subscribers with the lines of an Append that were
// written.
func (s *Store) publish(lines []Line, batches []appBatch) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if len(s.subs) == 0 {
		return
	}
	var saved []Line
	if !slices.ContainsFunc(batches, func(b appBatch) bool { return b.saved < len(b.lines) }) {
		saved = slices.Clone(lines)
	} else {
		for _, b := range batches {
			saved = append(saved, b.lines[:b.saved]...)
		}
	}
	if len(saved) == 0 {
		return
	}
	for _, fn := range s.subs {
		fn(saved)
	}
}

// Subscribe registers fn to be called after each Append with the lines it
// wrote, of all apps, each app's in file order. fn is called synchronously,
// never concurrently with itself, while the Append holds its apps' locks: it
// must not block, call the Store, or modify the lines (it may keep them).
// The returned function cancels the subscription; once it returns fn is not
// called again. Calling it from fn deadlocks.
func (s *Store) Subscribe(fn func([]Line)) (cancel func()) {
	s.subMu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	s.subMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, id)
			s.subMu.Unlock()
		})
	}
}

// appLog returns app's log, which it makes, empty, if create is true; nil
// if there is none.
func (s *Store) appLog(app string, create bool) (*appLog, error) {
	if err := deploy.ValidateAppName(app); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed()
	}
	a := s.apps[app]
	if a == nil && create {
		a = s.newAppLog(app)
		s.apps[app] = a
	}
	return a, nil
}

// newAppLog returns app's log, not loaded.
func (s *Store) newAppLog(app string) *appLog {
	return &appLog{
		name:     app,
		dir:      filepath.Join(s.dir, app),
		maxBytes: s.maxBytes,
		segBytes: s.segBytes,
		log:      s.log.With("app", app),
		notify:   make(chan struct{}),
	}
}
