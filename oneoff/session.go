package oneoff

import (
	"context"
	"fmt"
	"io"
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
	h *handle
}

// OneOff returns the session's one-off record.
func (s *Session) OneOff() OneOff { return s.h.snapshot() }

// Run starts the container with the terminal attached and pumps bytes both
// ways until the command ends, the user goes away, the session idles out or
// someone stops it. The container is removed, its output drained first,
// before Run returns.
func (s *Session) Run(ctx context.Context, conn Conn, size TermSize) Result {
	defer s.m.wg.Done()
	m, h := s.m, s.h
	if err := s.waitReady(conn); err != nil {
		res := Result{Outcome: Failed, Message: "could not start: " + err.Error()}
		conn.Finish(res)
		return res
	}
	rec := s.OneOff()
	ectx := context.WithoutCancel(ctx)
	cid := rec.ContainerID
	proc, err := m.rt.Start(ectx, cid, StartOptions{Attach: true, TTY: rec.TTY})
	if err != nil {
		m.log.Error("start failed", "oneoff", rec.ID, "app", rec.App, "name", rec.Name, "err", err)
		m.discard(h, Failed, userMessage(err))
		res := Result{Outcome: Failed, Message: "could not start: " + userMessage(err)}
		conn.Finish(res)
		return res
	}
	stream, exitc := proc.Stream, proc.Exit
	defer stream.Close()
	r := m.markRunning(ectx, h)
	rec, log := r.rec, r.log
	log.Info("one-off started", "client", rec.Client)
	conn, endRecording := s.record(conn, size)
	defer endRecording()
	m.met.sessions.Inc()
	defer m.met.sessions.Dec()

	act := newActivity(m.cfg.Now)
	h.attached(act)
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
		finished  bool // the user has been told the end
		exit      Exit
		exited    bool
		outEnded  bool
		drain     <-chan time.Time
		idleTimer = time.NewTimer(m.cfg.IdleTimeout)
		// Activity does not keep a terminal open forever: an attached
		// one-off has the same maximum lifetime as a detached one.
		deadline = time.Now().Add(m.cfg.MaxLifetime)
		lifetime = lifetimeTimer(&deadline)
		stopc    = h.stopc
	)
	defer idleTimer.Stop()
	defer lifetime.Stop()
	// closeEarly tells the user the end before the container has exited.
	closeEarly := func(why Outcome, msg string) {
		r.stop(why)
		conn.Finish(Result{Outcome: why, Message: msg})
		finished = true
	}
	for !exited || !outEnded {
		select {
		case exit = <-exitc:
			exited, exitc = true, nil
			if NodeLost(exit.Err) {
				// The node took the rest of the output along.
				stream.Close()
				break
			}
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
				r.stop(Disconnected)
			}
		case <-gone:
			if !exited && !finished {
				log.Info("terminal stopped reading; stopping")
				r.stop(Disconnected)
			}
		case <-stopc:
			stopc = nil
			r.stop(Stopped) // the reason recorded first wins
			if by := h.stopper(); by != "" && !exited && !finished {
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
			closeEarly(IdleTimeout, fmt.Sprintf("closed after %s without input or output", m.cfg.IdleTimeout))
		case <-lifetime.C:
			if exited || finished {
				continue
			}
			log.Info("lifetime over; closing the terminal and stopping", "max_lifetime", m.cfg.MaxLifetime)
			r.lifetimeOver(fmt.Sprintf("attached for the maximum lifetime of %s", m.cfg.MaxLifetime))
			closeEarly(LifetimeExceeded, fmt.Sprintf("closed after the maximum lifetime of %s", m.cfg.MaxLifetime))
		}
	}

	e := r.ending(exit, false)
	res := e.result()
	if !finished {
		conn.Finish(res)
	}
	r.end(e)
	return res
}

// waitReady waits until the one-off's container exists, telling the user
// how far the pull of its image has got meanwhile.
func (s *Session) waitReady(conn Conn) error {
	h := s.h
	select {
	case <-h.ready:
		return h.readyErr()
	default:
	}
	conn.Notify("oneoffd: pulling image " + h.snapshot().Image + "...")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last PullProgress
	for {
		select {
		case <-h.ready:
			if err := h.readyErr(); err != nil {
				return err
			}
			conn.Notify("oneoffd: image pulled")
			return nil
		case <-tick.C:
			if p := h.pullProgress(); p != last && p.Ref != "" {
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
		s.h.bytesOut.Add(int64(len(p)))
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
			s.h.bytesIn.Add(int64(len(in.Data)))
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
