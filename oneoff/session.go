package oneoff

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is the user's end of an attached session, as the attach listener
// presents it.
type Conn interface {
	// Next blocks for the next thing the user sends; an error means the
	// user is gone.
	Next() (Input, error)
	// Stdout and Stderr carry the container's output to the user.
	Stdout() io.Writer
	Stderr() io.Writer
	// Notify tells the user something while the session is being set up,
	// such as how far the image's pull has got.
	Notify(msg string)
	// Finish tells the user how the session ended and closes the connection.
	Finish(Result)
}

// InputKind tells what an Input carries.
type InputKind int

// The kinds of input.
const (
	// InputData is bytes for the container's stdin.
	InputData InputKind = iota
	// InputResize is the terminal's new size.
	InputResize
	// InputCloseStdin ends the container's stdin.
	InputCloseStdin
	// InputSignal is a signal for the container's process.
	InputSignal
	// InputAck says how much output the user has received (Offset), so
	// that a resumable session can forget it.
	InputAck
)

// Input is one thing the user sent.
type Input struct {
	Kind   InputKind
	Data   []byte
	Size   TermSize
	Signal string
	Offset int64
}

// Result is how a session ended, as the user is told.
type Result struct {
	Outcome  Outcome
	ExitCode *int
	Message  string
}

// Session is a claimed attached one-off: its terminal belongs to one
// connection.
type Session struct {
	m *Manager
	l *live
}

// OneOff returns the session's one-off record.
func (s *Session) OneOff() OneOff {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	return s.l.rec
}

// Run starts the container with the terminal attached and pumps bytes both
// ways until the command ends, the user goes away, the session idles out or
// someone stops it. The container is removed, its output drained first,
// before Run returns.
func (s *Session) Run(ctx context.Context, conn Conn, size TermSize) Result {
	defer s.m.wg.Done()
	m, l := s.m, s.l
	if err := s.waitReady(conn); err != nil {
		res := Result{Outcome: Failed, Message: "could not start: " + err.Error()}
		conn.Finish(res)
		return res
	}
	rec := s.OneOff()
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	ectx := context.WithoutCancel(ctx)
	cid := rec.ContainerID

	fail := func(err error) Result {
		log.Error("start failed", "err", err)
		m.discard(l, Failed, userMessage(err))
		res := Result{Outcome: Failed, Message: "could not start: " + userMessage(err)}
		conn.Finish(res)
		return res
	}
	proc, err := m.rt.Start(ectx, cid, StartOptions{Attach: true, TTY: rec.TTY})
	if err != nil {
		return fail(err)
	}
	stream, exitc := proc.Stream, proc.Exit
	defer stream.Close()
	now := m.cfg.Now().UTC()
	l.mu.Lock()
	l.rec.State, l.rec.StartedAt, l.rec.AttachDeadline = Running, &now, nil
	rec = l.rec
	l.mu.Unlock()
	if err := m.store.UpdateOneOff(ectx, rec); err != nil {
		log.Warn("record start failed", "err", err)
	}
	log.Info("one-off started", "client", rec.Client)
	m.started(l)
	conn, endRecording := s.record(conn, size)
	defer endRecording()
	m.met.sessions.Inc()
	defer m.met.sessions.Dec()

	act := newActivity(m.cfg.Now)
	l.mu.Lock()
	l.act = act
	l.mu.Unlock()
	gone := make(chan struct{}, 1)
	userGone := func() {
		select {
		case gone <- struct{}{}:
		default:
		}
	}
	outDone := make(chan error, 1)
	go func() {
		outDone <- stream.CopyOutput(s.counted(act.writer(conn.Stdout(), userGone)), s.counted(act.writer(conn.Stderr(), userGone)))
	}()
	if rec.TTY && !size.IsZero() {
		// Engines before API 1.42 ignore the size given at create time.
		if err := m.rt.Resize(ectx, cid, size); err != nil {
			log.Warn("initial resize failed", "err", err)
		}
	}
	inDone := make(chan error, 1)
	go func() { inDone <- s.pumpInput(ectx, conn, stream, act, cid) }()

	var (
		stopOnce  sync.Once
		finished  bool // the user has been told the end
		exit      Exit
		exited    bool
		outEnded  bool
		drain     <-chan time.Time
		idleTimer = time.NewTimer(m.cfg.IdleTimeout)
		lifetime  = time.NewTimer(m.cfg.MaxLifetime)
		stopc     = l.stopc
	)
	defer idleTimer.Stop()
	defer lifetime.Stop()
	stop := func(why Outcome) {
		l.requestStop(why)
		stopOnce.Do(func() {
			go func() {
				if err := m.rt.Stop(ectx, cid, m.cfg.StopGrace); err != nil {
					log.Error("stop container failed", "err", err)
				}
			}()
		})
	}
	for !exited || !outEnded {
		select {
		case exit = <-exitc:
			exited, exitc = true, nil
			drain = time.After(m.cfg.DrainTimeout)
		case <-outDone:
			outEnded, outDone = true, nil
		case <-drain:
			log.Warn("output did not end after exit; closing the stream", "timeout", m.cfg.DrainTimeout)
			stream.Close()
			drain = nil
		case <-inDone:
			inDone = nil
			if !exited && !finished {
				log.Info("terminal went away; stopping")
				stop(Disconnected)
			}
		case <-gone:
			if !exited && !finished {
				log.Info("terminal stopped reading; stopping")
				stop(Disconnected)
			}
		case <-stopc:
			stopc = nil
			stop(Stopped) // the reason recorded first wins
			if by := stoppedBy(l); by != "" && !exited && !finished {
				conn.Notify(fmt.Sprintf("\r\noneoffd: %s: SIGTERM, then SIGKILL after %s", by, m.cfg.StopGrace))
			}
		case <-idleTimer.C:
			if idle := act.idle(); idle < m.cfg.IdleTimeout {
				idleTimer.Reset(m.cfg.IdleTimeout - idle)
				continue
			}
			if exited {
				continue
			}
			log.Info("idle; closing the terminal and stopping", "idle_timeout", m.cfg.IdleTimeout)
			m.met.idleReaps.Inc()
			m.audit(rec, AuditReap, ActorDaemon, fmt.Sprintf("no input or output for %s", m.cfg.IdleTimeout))
			stop(IdleTimeout)
			conn.Finish(Result{Outcome: IdleTimeout,
				Message: fmt.Sprintf("closed after %s without input or output", m.cfg.IdleTimeout)})
			finished = true
		case <-lifetime.C:
			// Activity does not keep a terminal open forever: an attached
			// one-off has the same maximum lifetime as a detached one.
			if exited || finished {
				continue
			}
			log.Info("lifetime over; closing the terminal and stopping", "max_lifetime", m.cfg.MaxLifetime)
			m.met.lifetimeStops.Inc()
			m.audit(rec, AuditReap, ActorDaemon, fmt.Sprintf("attached for the maximum lifetime of %s", m.cfg.MaxLifetime))
			stop(LifetimeExceeded)
			conn.Finish(Result{Outcome: LifetimeExceeded,
				Message: fmt.Sprintf("closed after the maximum lifetime of %s", m.cfg.MaxLifetime)})
			finished = true
		}
	}

	l.mu.Lock()
	outcome := l.reason
	l.mu.Unlock()
	if outcome == "" {
		outcome = Exited
		if exit.OOMKilled {
			outcome = OutOfMemory
		}
	}
	res := Result{Outcome: outcome}
	msg := ""
	switch {
	case EngineGone(exit.Err):
		res.Outcome, msg = Lost, "the Docker engine went away while it ran"
		res.Message = "the Docker engine went away while the one-off ran: how it ended is unknown"
	case exit.Err != nil:
		res.Outcome, msg = Lost, exit.Err.Error()
		res.Message = "lost track of the container: " + msg
	default:
		code := exit.Code
		res.ExitCode = &code
	}
	if res.Outcome == Stopped && res.Message == "" {
		res.Message = stoppedBy(l)
	}
	if res.Outcome == OutOfMemory {
		res.Message = fmt.Sprintf("killed: it ran out of memory (size %s allows %s); a larger --size may help", rec.Size, m.memoryOf(rec.Size))
	}
	if !finished {
		conn.Finish(res)
	}
	m.recordEnd(l, res.Outcome, res.ExitCode, msg)
	rctx, cancel := m.engineContext(ctx)
	defer cancel()
	if err := m.rt.Remove(rctx, cid); err != nil {
		log.Error("remove container failed; reconcile will retry", "err", err)
	}
	m.finish(l, res.Outcome, res.ExitCode, msg)
	return res
}

// waitReady waits until the one-off's container exists, telling the user
// how far the pull of its image has got meanwhile.
func (s *Session) waitReady(conn Conn) error {
	l := s.l
	select {
	case <-l.ready:
		return l.readyErr()
	default:
	}
	conn.Notify("oneoffd: pulling image " + l.snapshot().Image + "...")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last PullProgress
	for {
		select {
		case <-l.ready:
			if err := l.readyErr(); err != nil {
				return err
			}
			conn.Notify("oneoffd: image pulled")
			return nil
		case <-tick.C:
			l.mu.Lock()
			p := l.progress
			l.mu.Unlock()
			if p != last && p.Ref != "" {
				conn.Notify("oneoffd: " + p.String())
				last = p
			}
		}
	}
}

// counted counts what goes out to the terminal.
func (s *Session) counted(w io.Writer) io.Writer {
	out := s.m.met.attachBytes.WithLabelValues("out")
	return writerFunc(func(p []byte) (int, error) {
		s.l.bytesOut.Add(int64(len(p)))
		out.Add(float64(len(p)))
		return w.Write(p)
	})
}

// writerFunc is a function that is an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// pumpInput forwards what the user sends until the user's side ends.
func (s *Session) pumpInput(ctx context.Context, conn Conn, stream Stream, act *activity, cid string) error {
	// The record changes under its lock as the session ends; this goroutine
	// may outlive Run.
	log := s.m.log.With("oneoff", s.OneOff().ID)
	for {
		in, err := conn.Next()
		if err != nil {
			return err
		}
		switch in.Kind {
		case InputData:
			act.touch()
			s.l.bytesIn.Add(int64(len(in.Data)))
			s.m.met.attachBytes.WithLabelValues("in").Add(float64(len(in.Data)))
			if _, err := stream.Write(in.Data); err != nil {
				log.Debug("write to container stdin failed", "err", err)
			}
		case InputResize:
			act.touch()
			if err := s.m.rt.Resize(ctx, cid, in.Size); err != nil {
				log.Debug("resize failed", "err", err)
			}
		case InputCloseStdin:
			if err := stream.CloseWrite(); err != nil {
				log.Debug("close stdin failed", "err", err)
			}
		case InputSignal:
			if err := s.m.rt.Signal(ctx, cid, in.Signal); err != nil {
				log.Debug("signal failed", "signal", in.Signal, "err", err)
			}
		}
	}
}

// activity remembers when a byte last flowed through a session.
type activity struct {
	now  func() time.Time
	last atomic.Int64
}

func newActivity(now func() time.Time) *activity {
	a := &activity{now: now}
	a.touch()
	return a
}

func (a *activity) touch() { a.last.Store(a.now().UnixNano()) }

func (a *activity) lastTime() time.Time { return time.Unix(0, a.last.Load()) }

func (a *activity) idle() time.Duration {
	return a.now().Sub(time.Unix(0, a.last.Load()))
}

// writer counts output as activity. When the user's side fails it calls
// gone and discards the rest, so the container never blocks on its output.
func (a *activity) writer(w io.Writer, gone func()) io.Writer {
	return &activityWriter{a: a, w: w, gone: gone}
}

type activityWriter struct {
	a      *activity
	w      io.Writer
	gone   func()
	failed bool
}

func (w *activityWriter) Write(p []byte) (int, error) {
	w.a.touch()
	if w.failed {
		return len(p), nil
	}
	if _, err := w.w.Write(p); err != nil {
		w.failed = true
		w.gone()
	}
	return len(p), nil
}

// stoppedBy says who stopped the one-off, once someone did: "stopped by
// alice@laptop with oneoff stop"; "" when nobody asked, or for another
// reason.
func stoppedBy(l *live) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reason != Stopped || l.stoppedBy == "" {
		return ""
	}
	return "stopped by " + l.stoppedBy
}
