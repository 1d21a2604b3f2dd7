package oneoff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// maxLineLen bounds a line held in memory: a longer one is cut into parts.
const maxLineLen = 1 << 20

// startDetached starts a detached one-off's container and hands it to a
// follower that feeds its output to the app's log until it ends.
func (m *Manager) startDetached(ctx context.Context, l *live, ttl time.Duration) (OneOff, error) {
	// The start is recorded before it is made, with the lifetime it will
	// have: a daemon that dies before the record says running finds the
	// job running at its next start, and adopts it.
	now := m.cfg.Now().UTC()
	expires := now.Add(ttl)
	l.mu.Lock()
	l.claimed = true // no terminal will claim it: its follower owns it
	l.rec.Step, l.rec.StartedAt, l.rec.ExpiresAt = StepStart, &now, &expires
	cid, rec := l.rec.ContainerID, l.rec
	l.mu.Unlock()
	unstarted := func() {
		l.mu.Lock()
		l.rec.Step, l.rec.StartedAt, l.rec.ExpiresAt = StepNone, nil, nil
		l.mu.Unlock()
	}
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		unstarted()
		m.discard(l, Failed, userMessage(err))
		return rec, fmt.Errorf("record one-off %q: %w", rec.ID, err)
	}
	m.logLifecycle(rec, startingLine(rec))
	// Its end is watched for as long as the daemon runs.
	proc, err := m.rt.Start(ctx, cid, StartOptions{TTY: rec.TTY, Watch: m.ctx})
	if err != nil {
		unstarted()
		m.logLifecycle(rec, "Process failed to start: "+userMessage(err))
		m.discard(l, Failed, userMessage(err))
		return rec, err
	}
	l.mu.Lock()
	l.rec.State, l.rec.Step = Running, StepNone
	rec = l.rec
	l.mu.Unlock()
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Warn("record start failed", "oneoff", rec.ID, "err", err)
	}
	m.started(l)
	m.bg.Add(1)
	go m.followDetached(l, proc.Exit, true)
	return rec, nil
}

// adoptDetached takes over a detached one-off that a previous run of the
// daemon started: its log resumes where the stored lines end, its lifetime
// still counts, and its exit is recorded.
func (m *Manager) adoptDetached(l *live) {
	l.mu.Lock()
	l.claimed = true
	l.running = true
	cid, name, rec := l.rec.ContainerID, l.rec.Name, l.rec
	l.mu.Unlock()
	m.met.runningOn(rec, 1)
	m.log.Info("adopting a detached one-off", "oneoff", l.id, "app", l.app, "name", name)
	m.bg.Add(1)
	go m.followDetached(l, m.rt.Wait(m.ctx, cid), false)
}

// followDetached feeds a detached one-off's output to the app's log,
// stops it when asked or when its lifetime is over, and once it has exited
// and its output is drained, removes its container and records the end.
// When the daemon closes, it leaves the job running for the next start.
// A fresh job's log is read from its start: the lines already stored are
// the daemon's own (the pull, the start), in the daemon's time, which says
// nothing of where the container's log stands.
func (m *Manager) followDetached(l *live, exitc <-chan Exit, fresh bool) {
	defer m.bg.Done()
	ctx := m.ctx
	rec := func() OneOff { l.mu.Lock(); defer l.mu.Unlock(); return l.rec }()
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	var (
		cursor LogCursor
		err    error
	)
	if !fresh {
		if cursor, err = m.logs.Resume(ctx, rec.App, rec.Name); err != nil {
			log.Error("find where the stored log ends; reading it all again", "err", err)
		}
	}
	f := &logFollower{m: m, rec: rec, log: log, cursor: cursor}

	var (
		stopFollowing context.CancelFunc
		followed      chan error
	)
	follow := func() {
		var followCtx context.Context
		followCtx, stopFollowing = context.WithCancel(ctx)
		followed = make(chan error, 1)
		go func() { followed <- f.read(followCtx, true) }()
	}
	follow()
	defer func() { stopFollowing() }()

	lifetime := time.NewTimer(0)
	if rec.ExpiresAt != nil {
		lifetime.Reset(time.Until(*rec.ExpiresAt))
	} else {
		lifetime.Stop()
	}
	defer lifetime.Stop()
	stop := func(why Outcome) {
		l.requestStop(why)
		go func() {
			if err := m.rt.Stop(context.WithoutCancel(ctx), rec.ContainerID, m.cfg.StopGrace); err != nil {
				log.Error("stop container failed", "err", err)
			}
		}()
	}
	var (
		exit          Exit
		engineWasGone bool // the engine went away while it ran
	)
	for waiting, stopc := true, l.stopc; waiting; {
		select {
		case exit = <-exitc:
			if exit.Err != nil && ctx.Err() != nil {
				m.leave(l, followed) // the wait ended with the daemon, not the job
				return
			}
			if EngineGone(exit.Err) {
				// Whether the job runs on, exited or vanished, only the
				// engine can tell, once it is back.
				stopFollowing()
				<-followed
				present, ok := m.awaitEngine(ctx, rec, log, exit.Err)
				if !ok {
					m.leave(l, nil)
					return
				}
				engineWasGone = true
				if present {
					exitc = m.rt.Wait(ctx, rec.ContainerID)
					follow() // from the cursor on: no line twice
					l.mu.Lock()
					why := l.reason
					l.mu.Unlock()
					if why != "" && stopc == nil {
						stop(why) // asked before: the engine may have gone first
					}
					continue
				}
				exit = Exit{Code: -1, Err: errors.New("its container disappeared while the engine was away")}
				followed <- nil
			}
			waiting = false
		case <-stopc:
			stopc = nil
			log.Info("stopping")
			stop(Stopped) // the reason recorded first wins
		case <-lifetime.C:
			log.Info("lifetime over; stopping", "expires_at", rec.ExpiresAt)
			m.met.lifetimeStops.Inc()
			m.audit(rec, AuditReap, ActorDaemon, "ran past its lifetime, until "+rec.ExpiresAt.Format(time.RFC3339))
			stop(LifetimeExceeded)
		case <-ctx.Done():
			m.leave(l, followed)
			return
		}
	}

	// The log's follow may end before the last lines are read (engines do
	// that at exit); what it missed is read once more, without following.
	select {
	case err = <-followed:
	case <-time.After(m.cfg.DrainTimeout):
		stopFollowing()
		err = <-followed
	case <-ctx.Done():
		m.leave(l, followed)
		return
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("following the log failed; reading it again", "err", err)
	}
	followedLines, endedAt := f.stored, time.Now()
	if err := f.catchUp(ctx); err != nil {
		if ctx.Err() != nil {
			m.leave(l, nil)
			return
		}
		log.Error("read the end of the log failed", "err", err)
	}
	f.flushPartials(ctx)
	log.Debug("log read", "followed", followedLines, "caught_up", f.stored-followedLines, "catch_up_time", time.Since(endedAt))

	l.mu.Lock()
	outcome := l.reason
	l.mu.Unlock()
	var code *int
	msg := ""
	switch {
	case exit.Err != nil:
		outcome, msg = Lost, exit.Err.Error()
	case outcome != "":
	case engineWasGone && exit.Code == engineLostCode:
		// Its end came with the engine's: the engine restarted without
		// its process, and says so with this code.
		outcome, msg = Lost, fmt.Sprintf("the Docker engine went away while it ran and took it along (exit code %d)", exit.Code)
	case exit.OOMKilled:
		outcome = OutOfMemory
		msg = fmt.Sprintf("killed: it ran out of memory (size %s allows %s)", rec.Size, m.memoryOf(rec.Size))
	default:
		outcome = Exited
	}
	if exit.Err == nil {
		c := exit.Code
		code = &c
	}
	m.logLifecycle(rec, m.endLine(l, outcome, code, msg))
	m.recordEnd(l, outcome, code, msg)
	rctx, cancel := m.engineContext(ctx)
	defer cancel()
	if err := m.rt.Remove(rctx, rec.ContainerID); err != nil {
		log.Error("remove container failed; reconcile will retry", "err", err)
	}
	m.finish(l, outcome, code, msg)
}

// awaitEngine waits for the engine that went away to answer again, asking
// it less and less often, and reports whether it still has the one-off's
// container; ok is false when the daemon closes first.
func (m *Manager) awaitEngine(ctx context.Context, rec OneOff, log *slog.Logger, cause error) (present, ok bool) {
	log.Warn("the engine went away; waiting for it to answer again", "err", cause)
	delay := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return false, false
		case <-time.After(delay):
		}
		list, err := m.rt.List(ctx, map[string]string{LabelInstance: m.cfg.Instance, LabelID: rec.ID})
		switch {
		case err == nil:
			log.Info("the engine answers again", "container_found", len(list) > 0)
			return len(list) > 0, true
		case !EngineGone(err):
			log.Warn("list the one-off's container failed; retrying", "err", err)
		}
		delay = min(2*delay, maxEngineWait)
	}
}

// engineLostCode is the exit code a Docker engine gives, as it restarts, to
// a container whose process it lost while it was down.
const engineLostCode = 255

// maxEngineWait is the longest wait between two calls to an engine that
// went away.
const maxEngineWait = 5 * time.Second

// leave stops following a one-off that goes on running while the daemon is
// down; the next start adopts it.
func (m *Manager) leave(l *live, followed <-chan error) {
	if followed != nil {
		<-followed
	}
	m.mu.Lock()
	delete(m.live, l.id)
	m.mu.Unlock()
}

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
