package oneoff_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// dropConn is a terminal's connection that can drop: after drop, its
// writes fail and Next ends, as a cut network does.
type dropConn struct {
	in      chan oneoff.Input
	gone    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	out     strings.Builder
	results []oneoff.Result
}

func newDropConn(t *testing.T) *dropConn {
	c := &dropConn{in: make(chan oneoff.Input), gone: make(chan struct{})}
	t.Cleanup(c.drop)
	return c
}

func (c *dropConn) drop() { c.once.Do(func() { close(c.gone) }) }

func (c *dropConn) Next() (oneoff.Input, error) {
	select {
	case in := <-c.in:
		return in, nil
	case <-c.gone:
		return oneoff.Input{}, io.EOF
	}
}

func (c *dropConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.gone:
		return 0, io.ErrClosedPipe
	default:
	}
	return c.out.Write(p)
}

func (c *dropConn) Stdout() io.Writer { return c }
func (c *dropConn) Stderr() io.Writer { return c }
func (c *dropConn) Notify(string)     {}

func (c *dropConn) Finish(res oneoff.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, res)
}

func (c *dropConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *dropConn) told() []oneoff.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]oneoff.Result(nil), c.results...)
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resumableRun starts a session whose terminal can reconnect.
func resumableRun(t *testing.T, h *harness) (*running, *dropConn, string) {
	t.Helper()
	first := newDropConn(t)
	r, token := resumableRunOn(t, h, first)
	return r, first, token
}

// resumableRunOn starts a session whose terminal can reconnect, first
// connected on first.
func resumableRunOn(t *testing.T, h *harness, first oneoff.Conn) (*running, string) {
	t.Helper()
	rec, secret := h.create(t, oneoff.Request{})
	sess, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	conn, token := sess.Resumable(first)
	if token == "" {
		t.Fatal("no resume token with a reconnect grace")
	}
	r := &running{rec: rec, result: make(chan oneoff.Result, 1)}
	go func() { r.result <- sess.Run(context.Background(), conn, oneoff.TermSize{}) }()
	r.stream = h.rt.Started(t, rec.ContainerID)
	return r, token
}

// stuckConn is a connection gone half-open: its writes block, as on a
// socket whose peer vanished, until the test ends.
type stuckConn struct {
	*dropConn
	writing chan struct{} // a write has begun
	once    sync.Once
	release chan struct{}
}

func newStuckConn(t *testing.T) *stuckConn {
	c := &stuckConn{dropConn: newDropConn(t), writing: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { close(c.release) })
	return c
}

func (c *stuckConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.writing) })
	<-c.release
	return 0, io.ErrClosedPipe
}

func (c *stuckConn) Stdout() io.Writer { return c }
func (c *stuckConn) Stderr() io.Writer { return c }

func TestSession_Resume(t *testing.T) {
	t.Run("the output missed comes once, then the end", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{ReconnectGrace: time.Hour})
		r, first, token := resumableRun(t, h)
		r.stream.Send(false, "one\n")
		waitFor(t, "the first line", func() bool { return first.output() == "one\n" })
		first.drop()
		r.stream.Send(false, "two\n")
		r.stream.Send(true, "three\n")
		second := newDropConn(t)
		var next string
		from := int64(len(first.output()))
		err := h.m.Resume(context.Background(), r.rec.ID, token, from, "127.0.0.1:2", second, func(name, tok string) error {
			next = tok
			return nil
		})
		if err != nil {
			t.Fatalf("Resume: %v", err)
		}
		if next == "" || next == token {
			t.Errorf("the reconnect got token %q, want a new one", next)
		}
		waitFor(t, "the missed output", func() bool { return second.output() == "two\nthree\n" })
		// The terminal acknowledges the reply, as it does at once: the
		// token it resumed with is spent.
		second.in <- oneoff.Input{Kind: oneoff.InputAck, Offset: from}
		second.in <- oneoff.Input{Kind: oneoff.InputAck, Offset: from}
		err = h.m.Resume(context.Background(), r.rec.ID, token, 0, "127.0.0.1:3", newDropConn(t), func(string, string) error { return nil })
		wantClass(t, err, errdefs.ErrUnauthorized, "wrong_resume_token")
		h.rt.Exit(t, r.rec.ContainerID, 7, true)
		res := r.wait(t)
		if res.Outcome != oneoff.Exited || *res.ExitCode != 7 {
			t.Errorf("result %+v, want exited 7", res)
		}
		waitFor(t, "the end told", func() bool { return len(second.told()) == 1 })
		if got := first.output() + second.output(); got != "one\ntwo\nthree\n" {
			t.Errorf("the terminal got %q over its two connections, want each line once", got)
		}
	})

	t.Run("a connection whose writes block holds up neither the output nor a reconnect", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{ReconnectGrace: time.Hour})
		first := newStuckConn(t)
		r, token := resumableRunOn(t, h, first)
		r.stream.Send(false, "one\n")
		select {
		case <-first.writing:
		case <-time.After(waitLimit):
			t.Fatal("no output written to the first connection")
		}
		r.stream.Send(false, "two\n") // more output while the first write hangs
		second := newDropConn(t)
		resumed := make(chan error, 1)
		go func() {
			resumed <- h.m.Resume(context.Background(), r.rec.ID, token, 0, "127.0.0.1:2", second, func(string, string) error { return nil })
		}()
		select {
		case err := <-resumed:
			if err != nil {
				t.Fatalf("Resume: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("the reconnect waits for the hung connection")
		}
		waitFor(t, "the output on the new connection", func() bool { return second.output() == "one\ntwo\n" })
		h.rt.Exit(t, r.rec.ContainerID, 0, true)
		if res := r.wait(t); res.Outcome != oneoff.Exited {
			t.Errorf("result %+v, want exited", res)
		}
		waitFor(t, "the end told", func() bool { return len(second.told()) == 1 })
	})

	t.Run("a reconnect lost before it spoke may come again with its token", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{ReconnectGrace: time.Hour})
		r, first, token := resumableRun(t, h)
		first.drop()
		waitFor(t, "the first connection lost", func() bool {
			return slices.ContainsFunc(h.audits(t, r.rec.ID), func(d string) bool { return strings.Contains(d, "terminal lost") })
		})
		resume := func(tok string, c *dropConn) (string, error) {
			var next string
			err := h.m.Resume(context.Background(), r.rec.ID, tok, 0, "127.0.0.1:2", c, func(_, n string) error { next = n; return nil })
			return next, err
		}
		// The reply with the next token is lost with the connection.
		second := newDropConn(t)
		if _, err := resume(token, second); err != nil {
			t.Fatalf("first reconnect: %v", err)
		}
		second.drop()
		waitFor(t, "the second connection lost", func() bool {
			return len(slices.DeleteFunc(h.audits(t, r.rec.ID), func(d string) bool { return !strings.Contains(d, "terminal lost") })) == 2
		})
		third := newDropConn(t)
		next, err := resume(token, third)
		if err != nil {
			t.Fatalf("reconnect with the token of a reconnect lost before it spoke: %v, want it taken", err)
		}
		// Once the terminal has spoken on its connection, it has read its
		// next token: the one before is refused.
		// (The second acknowledgement is taken once the first was.)
		third.in <- oneoff.Input{Kind: oneoff.InputAck, Offset: 0}
		third.in <- oneoff.Input{Kind: oneoff.InputAck, Offset: 0}
		third.drop()
		_, err = resume(token, newDropConn(t))
		wantClass(t, err, errdefs.ErrUnauthorized, "wrong_resume_token")
		if _, err := resume(next, newDropConn(t)); err != nil {
			t.Errorf("reconnect with the current token: %v", err)
		}
		h.rt.Exit(t, r.rec.ContainerID, 0, true)
		r.wait(t)
	})

	t.Run("an offset it does not hold is refused", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{ReconnectGrace: time.Hour})
		r, first, token := resumableRun(t, h)
		r.stream.Send(false, "abc")
		waitFor(t, "the output", func() bool { return first.output() == "abc" })
		first.drop()
		err := h.m.Resume(context.Background(), r.rec.ID, token, 99, "127.0.0.1:2", newDropConn(t), func(string, string) error { return nil })
		wantClass(t, err, errdefs.ErrInvalid, "bad_resume_offset")
		h.rt.Exit(t, r.rec.ContainerID, 0, true)
		r.wait(t)
	})

	t.Run("nobody back within the grace stops it", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{ReconnectGrace: 50 * time.Millisecond})
		r, first, token := resumableRun(t, h)
		first.drop()
		waitFor(t, "the stop", func() bool { return slices.Contains(h.rt.Calls(), "stop "+r.rec.ContainerID) })
		res := r.wait(t)
		if res.Outcome != oneoff.Disconnected {
			t.Errorf("outcome %s, want %s", res.Outcome, oneoff.Disconnected)
		}
		waitFor(t, "the grace to pass", func() bool {
			err := h.m.Resume(context.Background(), r.rec.ID, token, 0, "127.0.0.1:2", newDropConn(t), func(string, string) error { return nil })
			var e *errdefs.Error
			return errors.As(err, &e) && e.Code == "resume_expired"
		})
	})

	t.Run("without a grace nothing changes", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		sess, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		c := newDropConn(t)
		conn, token := sess.Resumable(c)
		if token != "" || conn != oneoff.Conn(c) {
			t.Errorf("got token %q and a wrapped conn, want the conn itself", token)
		}
		go sess.Run(context.Background(), conn, oneoff.TermSize{})
		h.rt.Started(t, rec.ContainerID)
		h.rt.Exit(t, rec.ContainerID, 0, true)
		h.waitStored(t, rec.ID, oneoff.Finished)
	})
}

// audits returns the details of one-off id's audit events.
func (h *harness) audits(t *testing.T, id string) []string {
	t.Helper()
	events, err := h.db.Audit(context.Background(), oneoff.AuditFilter{OneOffID: id})
	if err != nil {
		t.Fatal(err)
	}
	details := make([]string, len(events))
	for i, e := range events {
		details[i] = e.Detail
	}
	return details
}
