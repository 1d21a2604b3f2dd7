package logs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/oneoffd/oneoffd/oneoff"
)

// DefaultTailLines is how many lines a Query with no Lines asks for.
const DefaultTailLines = 100

// MaxTailLines is the most lines a Query gets, so that a tail's memory
// stays bounded.
const MaxTailLines = 10_000

// followChunk is how much a follower reads at once, more for a longer line.
const followChunk = 64 << 10

// Query picks the lines that Tail and Follow return.
type Query struct {
	// Lines is how many of the most recent lines to return: 0 means
	// DefaultTailLines, a negative number none (Follow then sends only new
	// lines), and more than MaxTailLines means MaxTailLines.
	Lines int
	// Source keeps only this source's lines; "" keeps all.
	Source string
	// FromStart makes Follow start at the oldest line kept, whatever
	// Lines says, so that a whole log streams without being held in
	// memory.
	FromStart bool
	// Until, once closed, makes Follow return after it has sent every
	// line appended before the close.
	Until <-chan struct{}
}

// limit is how many lines q asks for.
func (q Query) limit() int {
	switch {
	case q.Lines == 0:
		return DefaultTailLines
	case q.Lines < 0:
		return 0
	default:
		return min(q.Lines, MaxTailLines)
	}
}

// filter is q's filter.
func (q Query) filter() sourceFilter {
	return newSourceFilter(q.Source, q.Source == "")
}

// Tail returns the last q.Lines lines of app's log that match q, oldest
// first; none for an app without a log. Lines that are not records, which
// only damage to the files makes, are skipped.
func (s *Store) Tail(ctx context.Context, app string, q Query) ([]Line, error) {
	a, err := s.appLog(app, false)
	if err != nil || a == nil {
		return nil, err
	}
	return a.tail(ctx, a.snapshot(), q.limit(), q.filter())
}

// tail returns the last n lines that pass f in segs, oldest first.
func (a *appLog) tail(ctx context.Context, segs []segment, n int, f sourceFilter) ([]Line, error) {
	if n <= 0 {
		return nil, nil
	}
	var lines []Line // newest first
	err := a.scanBack(ctx, segs, f, func(l Line) bool {
		lines = append(lines, l)
		return len(lines) < n
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(lines)
	return lines, nil
}

// Resume returns where source's stored lines in app's log end, for each
// stream: the Time of its last line and how many of its lines carry exactly
// that Time, going back from the end over other lines until one of the
// stream's has an earlier Time; a stream with no line has a zero cursor.
func (s *Store) Resume(ctx context.Context, app, source string) (oneoff.LogCursor, error) {
	var cur oneoff.LogCursor
	a, err := s.appLog(app, false)
	if err != nil || a == nil {
		return cur, err
	}
	// Backward, each stream's cursor is its first line seen and the run of
	// its lines with that same time; a stream is done at its first line
	// with an earlier time.
	var done [2]bool
	err = a.scanBack(ctx, a.snapshot(), newSourceFilter(source, false), func(l Line) bool {
		i := 0
		if l.Stream == Stderr {
			i = 1
		}
		sc := cur.Of(l.Stream)
		switch {
		case done[i]:
		case sc.Count == 0:
			*sc = oneoff.StreamCursor{Time: l.Time, Count: 1}
		case l.Time.Equal(sc.Time):
			sc.Count++
		default:
			done[i] = true
		}
		return !done[0] || !done[1]
	})
	if err != nil {
		return oneoff.LogCursor{}, err
	}
	return cur, nil
}

// scanBack calls fn with the lines that pass f in segs, newest first, until
// fn returns false or the lines run out. A segment that retention deleted
// ends the scan, as all older ones are gone too.
func (a *appLog) scanBack(ctx context.Context, segs []segment, f sourceFilter, fn func(Line) bool) error {
	for i := len(segs) - 1; i >= 0; i-- {
		more, err := a.scanSegmentBack(ctx, segs[i], f, fn)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanSegmentBack is scanBack in one segment; it returns false when fn does.
func (a *appLog) scanSegmentBack(ctx context.Context, sg segment, f sourceFilter, fn func(Line) bool) (bool, error) {
	file, err := os.Open(a.path(sg.seq))
	if err != nil {
		return false, err
	}
	defer file.Close()
	sc := newBackScanner(file, sg.size)
	for k := 0; ; k++ {
		if k%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		rec, ok := sc.prev()
		if !ok {
			break
		}
		if !f.maybe(rec) {
			continue
		}
		l, err := parseRecord(rec, a.name)
		if err != nil || !f.match(&l) {
			continue
		}
		if !fn(l) {
			return false, nil
		}
	}
	if sc.err != nil {
		return false, fmt.Errorf("read %s: %w", a.path(sg.seq), sc.err)
	}
	return true, nil
}

// Follow calls fn with the last q.Lines lines of app's log that match q,
// then with the matching lines appended after them as they come, in file
// order, until ctx is done (it then returns nil), fn returns an error (it
// returns that error) or the Store is closed (an errdefs.ErrUnavailable
// error). fn is never called with an empty slice, and may keep it. No line
// is sent twice or skipped, but for lines that retention deletes before
// the follower reads them, when fn is slower than the appends. The app need
// not have a log yet.
func (s *Store) Follow(ctx context.Context, app string, q Query, fn func([]Line) error) error {
	if ctx.Err() != nil {
		return nil
	}
	a, err := s.appLog(app, true)
	if err != nil {
		return err
	}
	segs := a.snapshot()
	fl := follower{app: a, filter: q.filter(), fn: fn}
	defer fl.close()
	switch {
	case q.FromStart:
		// next moves on to the oldest segment kept.
	case len(segs) > 0:
		fl.seq, fl.off = segs[len(segs)-1].seq, segs[len(segs)-1].size
		fallthrough
	default:
		lines, err := a.tail(ctx, segs, q.limit(), fl.filter)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(lines) > 0 {
			if err := fn(lines); err != nil {
				return err
			}
		}
	}

	until, ending := q.Until, false
	for {
		seq, off, end, wait := a.next(fl.seq, fl.off)
		if wait != nil {
			if ending {
				return nil // all that was there when Until closed is sent
			}
			select {
			case <-wait:
				continue
			case <-until:
				// Look once more: appends made before the close are
				// visible now.
				until, ending = nil, true
				continue
			case <-ctx.Done():
				return nil
			case <-s.done:
				return errClosed()
			}
		}
		if err := fl.read(ctx, seq, off, end); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// next returns the part of the log after seq and off, which
// a follower has read up to: segment seq from off to end. When there is
// none yet, it returns a channel that is closed when there is.
func (a *appLog) next(seq uint64, off int64) (nseq uint64, noff, end int64, wait <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, found := slices.BinarySearchFunc(a.segs, seq, cmpSeq)
	if found {
		if off < a.segs[i].size {
			return seq, off, a.segs[i].size, nil
		}
		i++ // read to the end: on to the next
	}
	// Segments deleted by retention are skipped.
	if i < len(a.segs) {
		return a.segs[i].seq, 0, a.segs[i].size, nil
	}
	return seq, off, 0, a.notify
}

// has reports whether segment seq is still the log's.
func (a *appLog) has(seq uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, found := slices.BinarySearchFunc(a.segs, seq, cmpSeq)
	return found
}

// cmpSeq orders a segment and a sequence number.
func cmpSeq(sg segment, seq uint64) int {
	return cmp.Compare(sg.seq, seq)
}

// follower is Follow's reading position and buffers.
type follower struct {
	app    *appLog
	filter sourceFilter
	fn     func([]Line) error

	seq  uint64 // read up to segment seq's offset off
	off  int64
	file *os.File // open, the segment file called name
	name string
	buf  []byte
}

// read reads segment seq from off to end, and calls fn with the matching
// lines, a chunk at a time.
func (fl *follower) read(ctx context.Context, seq uint64, off, end int64) error {
	fl.seq, fl.off = seq, off
	if fl.file == nil || fl.name != fl.app.path(seq) {
		fl.close()
		file, err := os.Open(fl.app.path(seq))
		if errors.Is(err, os.ErrNotExist) && !fl.app.has(seq) {
			return nil // deleted by retention since next, which now skips it
		}
		if err != nil {
			return err
		}
		fl.file, fl.name = file, fl.app.path(seq)
	}
	if fl.buf == nil {
		fl.buf = make([]byte, followChunk)
	}
	for fl.off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(fl.buf)), end-fl.off)
		if _, err := fl.file.ReadAt(fl.buf[:n], fl.off); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read %s: %w", fl.app.path(seq), err)
		}
		data := fl.buf[:n]
		k := bytes.LastIndexByte(data, '\n')
		if k < 0 { // a record longer than the buffer
			fl.buf = make([]byte, 2*len(fl.buf))
			continue
		}
		var lines []Line
		for rec := range bytes.Lines(data[:k+1]) {
			rec = rec[:len(rec)-1]
			if !fl.filter.maybe(rec) {
				continue
			}
			l, err := parseRecord(rec, fl.app.name)
			if err != nil || !fl.filter.match(&l) {
				continue
			}
			lines = append(lines, l)
		}
		fl.off += int64(k) + 1
		if len(lines) > 0 {
			if err := fl.fn(lines); err != nil {
				return err
			}
		}
	}
	return nil
}

// close closes the follower's file.
func (fl *follower) close() {
	if fl.file != nil {
		fl.file.Close()
		fl.file, fl.name = nil, ""
	}
}
