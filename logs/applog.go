package logs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// appLog is one app's log.
type appLog struct {
	name     string
	dir      string
	maxBytes int64
	segBytes int64
	log      *slog.Logger

	mu     sync.Mutex
	segs   []segment     // oldest first; the last is the one appended to
	total  int64         // the sum of segs' sizes
	f      *os.File      // the last segment, for appending; nil until the first Append
	torn   bool          // a failed write left bytes after segs' last size in f
	notify chan struct{} // closed and replaced when lines are appended
	closed bool
}

// path is the file of segment seq.
func (a *appLog) path(seq uint64) string {
	return filepath.Join(a.dir, segmentName(seq))
}

// load finds the app's segments, repairs the newest and trims the log to
// its size.
func (a *appLog) load() error {
	segs, err := listSegments(a.dir)
	if err != nil {
		return err
	}
	if len(segs) > 0 {
		last := &segs[len(segs)-1]
		size, err := repairSegment(a.path(last.seq), last.size)
		if err != nil {
			return fmt.Errorf("repair %s: %w", a.path(last.seq), err)
		}
		if size != last.size {
			a.log.Warn("cut a torn record off a log", "file", a.path(last.seq), "bytes", last.size-size)
			last.size = size
		}
	}
	a.segs = segs
	for _, sg := range segs {
		a.total += sg.size
	}
	a.trim()
	return nil
}

// snapshot returns the app's segments as of now.
func (a *appLog) snapshot() []segment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.segs)
}

// bufPool holds the buffers that appends encode records into.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf is the largest buffer put back in bufPool.
const maxPooledBuf = 1 << 20

// append writes lines to the log, with the lock held, and returns how many
// it wrote: all of them unless it fails. Each segment it writes to takes a
// single write.
func (a *appLog) append(lines []Line) (saved int, err error) {
	if a.closed {
		return 0, errClosed()
	}
	if a.f == nil {
		if err := a.openLast(); err != nil {
			return 0, err
		}
	}
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledBuf {
			*bp = buf[:0]
			bufPool.Put(bp)
		}
	}()
	defer func() {
		if saved > 0 {
			close(a.notify)
			a.notify = make(chan struct{})
		}
	}()

	size := a.segs[len(a.segs)-1].size
	pending := 0 // lines in buf
	for i := range lines {
		start := len(buf)
		buf = appendRecord(buf, &lines[i])
		if size+int64(len(buf)) > a.segBytes && size+int64(start) > 0 {
			// The record does not fit: seal the segment without it.
			if start > 0 {
				if err := a.write(buf[:start]); err != nil {
					return saved, err
				}
				saved += pending
			}
			if err := a.roll(); err != nil {
				return saved, err
			}
			buf = buf[:copy(buf, buf[start:])]
			size, pending = 0, 0
		}
		pending++
	}
	if err := a.write(buf); err != nil {
		return saved, err
	}
	return saved + pending, nil
}

// openLast opens the last segment for appending, making the app's first if
// it has none.
func (a *appLog) openLast() error {
	if len(a.segs) == 0 {
		if err := os.MkdirAll(a.dir, 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(a.path(1), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		a.f, a.segs = f, []segment{{seq: 1}}
		return nil
	}
	f, err := os.OpenFile(a.path(a.segs[len(a.segs)-1].seq), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	a.f = f
	return nil
}

// write appends b, whole records, to the last segment with one write, then
// trims the log. A write that fails is undone.
func (a *appLog) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	last := &a.segs[len(a.segs)-1]
	if a.torn {
		if err := a.f.Truncate(last.size); err != nil {
			return err
		}
		a.torn = false
	}
	n, err := a.f.Write(b)
	if err != nil {
		if n > 0 && a.f.Truncate(last.size) != nil {
			a.torn = true
		}
		return err
	}
	last.size += int64(n)
	a.total += int64(n)
	a.trim()
	return nil
}

// roll seals the last segment and starts the next.
func (a *appLog) roll() error {
	seq := a.segs[len(a.segs)-1].seq + 1
	f, err := os.OpenFile(a.path(seq), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	a.f.Close() // everything is written; the close has nothing to report
	a.f = f
	a.segs = append(a.segs, segment{seq: seq})
	return nil
}

// trim deletes the oldest sealed segments while the log is over its size.
func (a *appLog) trim() {
	for a.total > a.maxBytes && len(a.segs) > 1 {
		old := a.segs[0]
		if err := os.Remove(a.path(old.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("cannot delete an old log segment", "file", a.path(old.seq), "err", err)
			return
		}
		a.segs = a.segs[1:]
		a.total -= old.size
	}
}
