package oneoff_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

// errDead is what a daemon that died gets from every call it still makes.
var errDead = errors.New("the daemon died")

// crashRuntime is the engine as a daemon that dies right after one call
// sees it: the call has its effect, then the calling goroutine freezes and
// nothing the daemon does afterwards reaches the engine, the store or the
// log.
type crashRuntime struct {
	oneoff.Runtime
	// at is the call after which the daemon dies: "create", "copy",
	// "start" or "remove"; "before create" dies as the create begins.
	at      string
	crashed chan struct{} // closed when the daemon dies
	thaw    chan struct{} // closed at the test's end: the frozen call returns
	dead    atomic.Bool
}

func newCrashRuntime(rt oneoff.Runtime, at string) *crashRuntime {
	return &crashRuntime{Runtime: rt, at: at, crashed: make(chan struct{}), thaw: make(chan struct{})}
}

// after kills the daemon if call is the crash point.
func (c *crashRuntime) after(call string) {
	if call == c.at && !c.dead.Swap(true) {
		close(c.crashed)
		<-c.thaw
	}
}

func (c *crashRuntime) gone() bool { return c.dead.Load() }

func (c *crashRuntime) Create(ctx context.Context, spec oneoff.Spec) (oneoff.Placement, error) {
	c.after("before create")
	if c.gone() {
		return oneoff.Placement{}, errDead
	}
	p, err := c.Runtime.Create(ctx, spec)
	if err == nil {
		c.after("create")
	}
	if c.gone() {
		return oneoff.Placement{}, errDead
	}
	return p, err
}

func (c *crashRuntime) CopyTo(ctx context.Context, id, dir string, tar io.Reader) error {
	if c.gone() {
		return errDead
	}
	err := c.Runtime.CopyTo(ctx, id, dir, tar)
	if err == nil {
		c.after("copy")
	}
	if c.gone() {
		return errDead
	}
	return err
}

func (c *crashRuntime) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	if c.gone() {
		return oneoff.Process{}, errDead
	}
	p, err := c.Runtime.Start(ctx, id, opts)
	if err == nil {
		c.after("start")
	}
	if c.gone() {
		return oneoff.Process{}, errDead
	}
	return p, err
}

func (c *crashRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	if c.gone() {
		return errDead
	}
	return c.Runtime.Stop(ctx, id, grace)
}

func (c *crashRuntime) Remove(ctx context.Context, id string) error {
	if c.gone() {
		return errDead
	}
	err := c.Runtime.Remove(ctx, id)
	if err == nil {
		c.after("remove")
	}
	if c.gone() {
		return errDead
	}
	return err
}

func (c *crashRuntime) Signal(ctx context.Context, id, signal string) error {
	if c.gone() {
		return errDead
	}
	return c.Runtime.Signal(ctx, id, signal)
}

func (c *crashRuntime) Resize(ctx context.Context, id string, size oneoff.TermSize) error {
	if c.gone() {
		return errDead
	}
	return c.Runtime.Resize(ctx, id, size)
}

// crashStore is the store as the daemon of c sees it: no write of a dead
// daemon lands.
type crashStore struct {
	oneoff.Store
	c *crashRuntime
}

func (s *crashStore) CreateOneOff(ctx context.Context, o oneoff.OneOff) error {
	if s.c.gone() {
		return errDead
	}
	return s.Store.CreateOneOff(ctx, o)
}

func (s *crashStore) UpdateOneOff(ctx context.Context, o oneoff.OneOff) error {
	if s.c.gone() {
		return errDead
	}
	return s.Store.UpdateOneOff(ctx, o)
}

func (s *crashStore) AddAudit(ctx context.Context, ev oneoff.AuditEvent) error {
	if s.c.gone() {
		return errDead
	}
	return s.Store.AddAudit(ctx, ev)
}

// crashLogs is the log as the daemon of c sees it.
type crashLogs struct {
	oneoff.LogSink
	c *crashRuntime
}

func (l *crashLogs) Append(ctx context.Context, lines []oneoff.LogLine) error {
	if l.c.gone() {
		return errDead
	}
	return l.LogSink.Append(ctx, lines)
}

// TestManager_crash kills the daemon at each step of a one-off's making and
// unmaking, right after the engine did what was asked and before the
// record says so, then starts another daemon on the same engine and store:
// each one-off is adopted, or ended with the right outcome, and no
// container is left behind.
func TestManager_crash(t *testing.T) {
	ctx := context.Background()
	t0 := engineTime()
	files := func() oneoff.Request {
		ups, data := upload([]string{"seed.sql"}, []string{"INSERT 1;"})
		return oneoff.Request{Uploads: ups, UploadData: data}
	}
	detached := func(req oneoff.Request) oneoff.Request {
		req.Detached, req.Command = true, oneoff.Command{Line: "job"}
		return req
	}
	for _, tt := range []struct {
		name string
		req  oneoff.Request
		at   string
		// then is what happens to the one-off once created, on the dying
		// daemon: the crash comes in what it sets off.
		then func(t *testing.T, h *harness, m *oneoff.Manager, rec oneoff.OneOff, secret string)
		// late sets the restarted daemon's clock past the attach deadline.
		late bool
		// exited makes the job exit, with output, while no daemon runs.
		exited bool
		// want is the outcome; empty for a one-off adopted and ended by
		// the test.
		want    oneoff.Outcome
		wantErr string
	}{
		{name: "attached, before the create", at: "before create", want: oneoff.Failed, wantErr: "before the one-off's container was created"},
		{name: "attached, after the create", at: "create"},
		{name: "attached, after the create, past its deadline", at: "create", late: true, want: oneoff.AttachTimeout},
		{name: "attached with files, after the create", req: files(), at: "create", want: oneoff.Failed, wantErr: "files"},
		{name: "attached with files, after the copy", req: files(), at: "copy", want: oneoff.Failed, wantErr: "files"},
		{name: "attached, after its session's start", at: "start", then: runSession, want: oneoff.Lost, wantErr: "terminal went away"},
		{name: "attached, stopped, after the remove", at: "remove", then: stop, want: oneoff.Stopped},
		{name: "attached, exited, after the remove", at: "remove", then: sessionExits3, want: oneoff.Exited},
		{name: "detached, before the create", req: detached(oneoff.Request{}), at: "before create", want: oneoff.Failed, wantErr: "before the one-off's container was created"},
		{name: "detached, after the create", req: detached(oneoff.Request{}), at: "create", want: oneoff.Failed, wantErr: "before the one-off started"},
		{name: "detached with files, after the copy", req: detached(files()), at: "copy", want: oneoff.Failed, wantErr: "files"},
		{name: "detached, after the start", req: detached(oneoff.Request{}), at: "start"},
		{name: "detached, after the start, exited while down", req: detached(oneoff.Request{}), at: "start", exited: true, want: oneoff.Exited},
		{name: "detached, exited, after the remove", req: detached(oneoff.Request{}), at: "remove", then: exit3, want: oneoff.Exited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, oneoff.Config{})
			crt := newCrashRuntime(h.rt, tt.at)
			dying := oneoff.NewManager(h.cfg, crt, &crashStore{Store: h.db, c: crt}, h.deploys,
				&crashLogs{LogSink: h.logs, c: crt}, slog.New(slog.DiscardHandler))
			returned := make(chan struct{})
			t.Cleanup(func() { close(crt.thaw); <-returned })
			req := tt.req
			if req.Command.IsZero() {
				req.Command = oneoff.Command{Args: []string{"bash"}}
			}
			req.TTY = !req.Detached
			go func() {
				defer close(returned)
				rec, secret, err := dying.Create(ctx, testApp, req)
				if err == nil && tt.then != nil {
					tt.then(t, h, dying, rec, secret)
				}
			}()
			select {
			case <-crt.crashed:
			case <-time.After(waitLimit):
				t.Fatalf("the daemon never reached the crash point %q", tt.at)
			}

			recs, err := h.db.OneOffs(ctx, oneoff.Filter{})
			if err != nil || len(recs) != 1 {
				t.Fatalf("records after the crash: %v, %v; want one", recs, err)
			}
			rec := recs[0]
			if rec.State == oneoff.Finished {
				t.Fatal("the crash left the record finished, want it unfinished")
			}
			containers, err := h.rt.List(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var cid string
			if len(containers) == 1 {
				cid = containers[0].ID
			}
			lines := []string{"stdout:while down"}
			if tt.at == "remove" {
				if len(containers) != 0 || rec.Step != oneoff.StepRemove || rec.Outcome != tt.want {
					t.Fatalf("the crash left %d containers, a record at step %q with outcome %q; want none, %q, %q",
						len(containers), rec.Step, rec.Outcome, oneoff.StepRemove, tt.want)
				}
			}
			if tt.req.Detached && tt.at == "start" {
				h.rt.Log(t, cid, entry(t0, "stdout", "while down\n"))
				if tt.exited {
					h.rt.LogAndExit(t, cid, []oneoff.LogEntry{entry(t0.Add(1), "stderr", "done\n")}, 3)
					lines = append(lines, "stderr:done")
				}
			}

			cfg := h.cfg
			if tt.late {
				cfg.Now = func() time.Time { return time.Now().Add(time.Hour) }
			}
			restarted := h.manager(cfg)
			if err := restarted.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { restarted.Close(ctx) })

			switch {
			case tt.want == "" && !tt.req.Detached:
				got := h.stored(t, rec.ID)
				if got.State != oneoff.Pending || got.ContainerID != cid || h.rt.Removed(cid) {
					t.Fatalf("after the restart: %s with container %q (removed %v); want pending with its container %q",
						got.State, got.ContainerID, h.rt.Removed(cid), cid)
				}
				if got, err := restarted.Stop(ctx, rec.ID, "tester"); err != nil || got.Outcome != oneoff.Stopped {
					t.Errorf("Stop after the adoption: %s, %v; want stopped", got.Outcome, err)
				}
			case tt.want == "":
				got := h.waitStored(t, rec.ID, oneoff.Running)
				if got.StartedAt == nil || got.ExpiresAt == nil {
					t.Errorf("adopted with started %v, expires %v; want both", got.StartedAt, got.ExpiresAt)
				}
				h.rt.Log(t, cid, entry(t0.Add(2), "stdout", "after\n"))
				h.rt.Exit(t, cid, 0, false)
				lines = append(lines, "stdout:after")
				if got := h.waitStored(t, rec.ID, oneoff.Finished); got.Outcome != oneoff.Exited {
					t.Errorf("outcome %s, want exited", got.Outcome)
				}
			default:
				got := h.waitStored(t, rec.ID, oneoff.Finished)
				if got.Outcome != tt.want || !strings.Contains(got.Error, tt.wantErr) {
					t.Errorf("outcome %s (%q), want %s (%q)", got.Outcome, got.Error, tt.want, tt.wantErr)
				}
				if tt.want == oneoff.Exited && (got.ExitCode == nil || *got.ExitCode != 3) {
					t.Errorf("exit code %v, want 3", got.ExitCode)
				}
			}
			if tt.then != nil && tt.req.Detached {
				lines = []string{"stdout:before the end"}
			}
			if tt.req.Detached && (tt.at == "start" || tt.at == "remove") {
				if got := h.texts(rec.Name); strings.Join(got, "|") != strings.Join(lines, "|") {
					t.Errorf("lines %q, want %q, each once", got, lines)
				}
			}
			<-restarted.Done(rec.ID)
			if left, _ := h.rt.List(ctx, nil); len(left) > 0 {
				t.Errorf("containers left: %v", left)
			}
		})
	}
}

// runSession attaches a terminal to the one-off and runs its session.
func runSession(t *testing.T, _ *harness, m *oneoff.Manager, rec oneoff.OneOff, secret string) {
	sess, err := m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
	if err != nil {
		t.Errorf("Claim: %v", err)
		return
	}
	sess.Run(context.Background(), newFakeConn(t), oneoff.TermSize{})
}

// stop stops the one-off before anyone attached.
func stop(t *testing.T, _ *harness, m *oneoff.Manager, rec oneoff.OneOff, _ string) {
	_, _ = m.Stop(context.Background(), rec.ID, "tester")
}

// exit3 makes the detached job write a line and exit with status 3.
func exit3(t *testing.T, h *harness, _ *oneoff.Manager, rec oneoff.OneOff, _ string) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	h.rt.LogAndExit(t, rec.ContainerID, []oneoff.LogEntry{entry(at, "stdout", "before the end\n")}, 3)
}

// sessionExits3 attaches a terminal to the one-off and runs its session,
// in which the command exits with status 3.
func sessionExits3(t *testing.T, h *harness, m *oneoff.Manager, rec oneoff.OneOff, secret string) {
	sess, err := m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
	if err != nil {
		t.Errorf("Claim: %v", err)
		return
	}
	go func() {
		h.rt.Started(t, rec.ContainerID)
		h.rt.Exit(t, rec.ContainerID, 3, true)
	}()
	sess.Run(context.Background(), newFakeConn(t), oneoff.TermSize{})
}
