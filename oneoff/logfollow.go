package oneoff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"time"
)

// maxLineLen bounds a line held in memory: a longer one is cut into parts.
const maxLineLen = 1 << 20

// logFollower turns a container's log into the app's log lines, resuming
// after the lines already stored.
type logFollower struct {
	m   *Manager
	rec OneOff
	log *slog.Logger
	// cursor is where the stored lines end, stream by stream; skip counts,
	// by stream, the lines at exactly the cursor's time that a read from a
	// time sees again.
	cursor LogCursor
	skip   map[string]int
	// last is the last entry taken, in the log's order, and hasLast says
	// there is one: the place to go on from in the log's tail.
	last    LogEntry
	hasLast bool
	partial map[string]*partialLine
	batch   []LogLine
	stored  int // lines stored, for the log
}

// partialLine is the start of a line whose end has not come yet.
type partialLine struct {
	data []byte
	time time.Time
}

// A batch of lines is stored once it has flushLines lines, or once its
// oldest line has waited flushDelay.
const (
	flushLines = 4096
	flushDelay = 20 * time.Millisecond
)

// catchUpWindow is how many of the log's last entries are read first to
// find what a follow missed; reading from a time instead makes the engine
// scan the whole log.
const catchUpWindow = 2000

// skewMargin is how long before the streams' cursors a read from a time
// starts: the engine stamps each stream's lines in order, but the lines
// of the two streams reach the log up to this much out of time order.
const skewMargin = time.Second

// errShortWindow says the log's last entries do not reach back to the
// last entry taken.
var errShortWindow = errors.New("the log's tail does not reach the last line read")

// catchUp reads what the follow missed once the container has stopped:
// what follows the last entry taken in the log's last entries when they
// reach back that far, else all the log from the cursor on.
func (f *logFollower) catchUp(ctx context.Context) error {
	if f.hasLast {
		last := f.last
		err := f.readLog(ctx, LogOptions{Tail: catchUpWindow}, &last)
		if !errors.Is(err, errShortWindow) {
			return err
		}
	}
	return f.read(ctx, false)
}

// read reads the container's log from the cursor on, to its end, or with
// follow until the container stops.
func (f *logFollower) read(ctx context.Context, follow bool) error {
	return f.readLog(ctx, LogOptions{Since: f.since(), Follow: follow}, nil)
}

// since is the time a read starts from to see every line after the cursor.
func (f *logFollower) since() time.Time {
	var t time.Time
	for _, sc := range []StreamCursor{f.cursor.Stdout, f.cursor.Stderr} {
		if sc.Count > 0 && (t.IsZero() || sc.Time.Before(t)) {
			t = sc.Time
		}
	}
	if t.IsZero() {
		return t
	}
	return t.Add(-skewMargin)
}

// readLog stores the log's lines after the cursor. With after, it takes
// only the entries that come after that one, which must be in what it
// reads; otherwise it takes nothing and the error is errShortWindow.
func (f *logFollower) readLog(ctx context.Context, opts LogOptions, after *LogEntry) error {
	f.skip = map[string]int{"stdout": f.cursor.Stdout.Count, "stderr": f.cursor.Stderr.Count}
	if after == nil {
		f.partial = nil // a line's start comes again with the rest
	} else {
		f.skip = nil // the place is exact: all that follows is new
	}
	opts.TTY = f.rec.TTY
	rd, err := f.m.rt.Logs(ctx, f.rec.ContainerID, opts)
	if err != nil {
		return err
	}
	defer rd.Close()
	// One goroutine reads while this one stores, in batches of what came
	// meanwhile: each batch is one write to the log store.
	q := newEntryQueue()
	go func() {
		found := after == nil
		for {
			e, err := rd.Next()
			if err != nil {
				switch {
				case !found:
					err = errShortWindow
				case errors.Is(err, io.EOF):
					err = nil
				}
				q.close(err)
				return
			}
			if !found {
				found = e.Time.Equal(after.Time) && e.Stream == after.Stream && bytes.Equal(e.Data, after.Data)
				continue
			}
			e.Data = bytes.Clone(e.Data)
			if !q.push(e) {
				return
			}
		}
	}()
	defer q.close(context.Canceled) // stops the reader if this returns first
	var (
		buf     []LogEntry
		pending time.Time // when the oldest line not yet stored came
	)
	for {
		items, done, err := q.take(buf, len(f.batch) == 0)
		for _, e := range items {
			f.take(e)
		}
		buf = items
		if done {
			f.flush(ctx)
			return err
		}
		if ctx.Err() != nil {
			f.flush(ctx)
			return ctx.Err()
		}
		if len(f.batch) == 0 {
			continue
		}
		if pending.IsZero() {
			pending = time.Now()
		}
		if len(f.batch) >= flushLines || time.Since(pending) >= flushDelay {
			f.flush(ctx)
			pending = time.Time{}
			continue
		}
		time.Sleep(flushDelay / 8) // let more lines come to store them together
	}
}

// take adds an entry's complete lines to the batch, keeping a line's start
// until its end comes.
func (f *logFollower) take(e LogEntry) {
	if sc := f.cursor.Of(e.Stream); sc.Count > 0 && e.Time.Before(sc.Time) {
		return // stored before
	}
	f.last, f.hasLast = e, true
	if f.partial == nil {
		f.partial = map[string]*partialLine{}
	}
	data := e.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		p := f.partial[e.Stream]
		if i < 0 {
			if p == nil {
				p = &partialLine{}
				f.partial[e.Stream] = p
			}
			p.data, p.time = append(p.data, data...), e.Time
			if len(p.data) >= maxLineLen {
				f.emit(e.Time, e.Stream, p.data)
				delete(f.partial, e.Stream)
			}
			return
		}
		line := data[:i]
		if p != nil {
			line = append(p.data, line...)
			delete(f.partial, e.Stream)
		}
		f.emit(e.Time, e.Stream, line)
		data = data[i+1:]
	}
}

// emit adds a line to the batch, unless it is one already stored.
func (f *logFollower) emit(t time.Time, stream string, text []byte) {
	if f.skip[stream] > 0 && t.Equal(f.cursor.Of(stream).Time) {
		f.skip[stream]--
		return
	}
	if f.rec.TTY {
		text = bytes.TrimSuffix(text, []byte("\r"))
	}
	f.batch = append(f.batch, LogLine{Time: t, App: f.rec.App, Source: f.rec.Name, Stream: stream, Text: string(text)})
}

// flush stores the batch and moves the cursor past it.
func (f *logFollower) flush(ctx context.Context) {
	if len(f.batch) == 0 {
		return
	}
	if err := f.m.logs.Append(context.WithoutCancel(ctx), f.batch); err != nil {
		f.log.Error("store log lines failed; they are lost", "lines", len(f.batch), "err", err)
		f.m.met.logDropped.Add(float64(len(f.batch)))
	} else {
		f.m.met.logLines.Add(float64(len(f.batch)))
		f.stored += len(f.batch)
		for _, line := range f.batch {
			f.cursor.Add(line)
		}
	}
	f.batch = f.batch[:0]
}

// flushPartials stores the starts of lines that never got their end, such
// as a last line without a newline.
func (f *logFollower) flushPartials(ctx context.Context) {
	for _, stream := range []string{"stdout", "stderr"} {
		if p := f.partial[stream]; p != nil {
			f.emit(p.time, stream, p.data)
			delete(f.partial, stream)
		}
	}
	f.flush(ctx)
}
