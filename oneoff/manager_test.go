package oneoff_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

const (
	testApp      = "web"
	testInstance = "test-instance"
)

// harness is a Manager on a fake runtime and a real store, with app "web"
// deployed.
type harness struct {
	m       *oneoff.Manager
	rt      *fakeruntime.Runtime
	db      *store.DB
	deploys *deploy.Service
	logs    *fakeruntime.Logs
	cfg     oneoff.Config
}

func newHarness(t *testing.T, cfg oneoff.Config) *harness {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	deploys := deploy.NewService(db)
	_, err = deploys.Deploy(context.Background(), testApp, deploy.Spec{
		Image:    "registry.example.com/web:v1",
		Env:      map[string]string{"A": "1", "B": "2"},
		Procfile: "worker: bin/worker\nconsole: bin/console\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Instance == "" {
		cfg.Instance = testInstance
	}
	h := &harness{rt: fakeruntime.New(), db: db, deploys: deploys, logs: &fakeruntime.Logs{}, cfg: cfg}
	h.m = h.manager(cfg)
	return h
}

// manager returns another Manager on the same runtime and store, as a
// restarted daemon would have.
func (h *harness) manager(cfg oneoff.Config) *oneoff.Manager {
	return oneoff.NewManager(cfg, h.rt, h.db, h.deploys, h.logs, slog.New(slog.DiscardHandler))
}

// create makes a one-off that runs "bash".
func (h *harness) create(t *testing.T, req oneoff.Request) (oneoff.OneOff, string) {
	t.Helper()
	if req.Command.IsZero() && req.Type == "" {
		req.Command = oneoff.Command{Args: []string{"bash"}}
	}
	rec, secret, err := h.m.Create(context.Background(), testApp, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return rec, secret
}

// stored returns the store's record of one-off id.
func (h *harness) stored(t *testing.T, id string) oneoff.OneOff {
	t.Helper()
	rec, err := h.db.OneOff(context.Background(), id)
	if err != nil {
		t.Fatalf("read record: %v", err)
	}
	return rec
}

// waitStored polls until the store's record of one-off id is in state.
func (h *harness) waitStored(t *testing.T, id string, state oneoff.State) oneoff.OneOff {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		rec := h.stored(t, id)
		if rec.State == state {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("one-off %s is still %s, want %s", id, rec.State, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantClass checks that err is of class and carries a code and a message.
func wantClass(t *testing.T, err, class error, code string) *errdefs.Error {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("got error %v, want class %v", err, class)
	}
	e, ok := errdefs.As(err)
	if !ok {
		t.Fatalf("got error %v, want an *errdefs.Error", err)
	}
	if e.Code != code {
		t.Errorf("got code %q, want %q", e.Code, code)
	}
	if e.Message == "" {
		t.Error("got an empty message")
	}
	return e
}

func TestManager_Create(t *testing.T) {
	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name     string
			app      string
			req      oneoff.Request
			class    error
			code     string
			mentions []string
		}{
			{name: "unknown app", app: "nope", req: oneoff.Request{Command: oneoff.Command{Line: "bash"}},
				class: errdefs.ErrNotFound, code: "app_not_found", mentions: []string{"nope"}},
			{name: "bad env name", app: testApp, req: oneoff.Request{Command: oneoff.Command{Line: "bash"},
				Env: map[string]string{"GOOD": "1", "1BAD": "x"}},
				class: errdefs.ErrInvalid, code: "invalid_env_name", mentions: []string{"1BAD"}},
			{name: "no command", app: testApp, req: oneoff.Request{},
				class: errdefs.ErrInvalid, code: "command_required"},
			{name: "blank command line", app: testApp, req: oneoff.Request{Command: oneoff.Command{Line: "  "}},
				class: errdefs.ErrInvalid, code: "command_required"},
			{name: "unknown process type", app: testApp, req: oneoff.Request{Type: "web"},
				class: errdefs.ErrInvalid, code: "unknown_process_type", mentions: []string{`"web"`, "console, worker"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, oneoff.Config{})
				_, _, err := h.m.Create(context.Background(), tt.app, tt.req)
				e := wantClass(t, err, tt.class, tt.code)
				for _, s := range tt.mentions {
					if !strings.Contains(e.Message, s) {
						t.Errorf("got message %q, want it to mention %s", e.Message, s)
					}
				}
				if calls := h.rt.Calls(); len(calls) != 0 {
					t.Errorf("got engine calls %q, want none", calls)
				}
				recs, err := h.m.List(context.Background(), oneoff.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != 0 {
					t.Errorf("got %d records, want none", len(recs))
				}
			})
		}
	})

	t.Run("argv", func(t *testing.T) {
		tests := []struct {
			name string
			req  oneoff.Request
			want []string
		}{
			{name: "shell line", req: oneoff.Request{Command: oneoff.Command{Line: "echo $HOME; ls"}},
				want: []string{"/bin/sh", "-c", "echo $HOME; ls"}},
			{name: "argument list", req: oneoff.Request{Command: oneoff.Command{Args: []string{"ls", "-l", "my dir"}}},
				want: []string{"ls", "-l", "my dir"}},
			{name: "process type", req: oneoff.Request{Type: "console"},
				want: []string{"/bin/sh", "-c", "bin/console"}},
			{name: "process type with arguments",
				req:  oneoff.Request{Type: "console", Command: oneoff.Command{Args: []string{"--sandbox", "it's here", "a=b", ""}}},
				want: []string{"/bin/sh", "-c", `bin/console --sandbox 'it'\''s here' a=b ''`}},
			{name: "process type with a line", req: oneoff.Request{Type: "worker", Command: oneoff.Command{Line: "--queue high"}},
				want: []string{"/bin/sh", "-c", "bin/worker --queue high"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, oneoff.Config{})
				rec, _ := h.create(t, tt.req)
				if !slices.Equal(rec.Command, tt.want) {
					t.Errorf("got record command %q, want %q", rec.Command, tt.want)
				}
				if got := h.rt.Spec(t, rec.ContainerID).Cmd; !slices.Equal(got, tt.want) {
					t.Errorf("got container command %q, want %q", got, tt.want)
				}
				if got := h.stored(t, rec.ID).Command; !slices.Equal(got, tt.want) {
					t.Errorf("got stored command %q, want %q", got, tt.want)
				}
			})
		}
	})

	t.Run("container and record", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{AttachWait: time.Hour})
		before := time.Now().UTC()
		rec, secret := h.create(t, oneoff.Request{
			Command: oneoff.Command{Line: "bash"}, Env: map[string]string{"B": "override", "C": "3"},
			TTY: true, Term: "xterm-256color", Window: oneoff.TermSize{Rows: 24, Cols: 80}, Requester: "alice",
		})
		if secret == "" {
			t.Error("got an empty secret")
		}
		spec := h.rt.Spec(t, rec.ContainerID)
		wantLabels := map[string]string{
			oneoff.LabelManaged: "true", oneoff.LabelInstance: testInstance, oneoff.LabelID: rec.ID,
			oneoff.LabelApp: testApp, oneoff.LabelName: rec.Name, oneoff.LabelMode: "attached",
		}
		for k, want := range wantLabels {
			if got := spec.Labels[k]; got != want {
				t.Errorf("got label %s=%q, want %q", k, got, want)
			}
		}
		if want := []string{"A=1", "B=override", "C=3", "TERM=xterm-256color"}; !slices.Equal(spec.Env, want) {
			t.Errorf("got env %q, want %q", spec.Env, want)
		}
		if want := testApp + "." + rec.Name + "." + rec.ID; spec.Name != want {
			t.Errorf("got container name %q, want %q", spec.Name, want)
		}
		if spec.Image != "registry.example.com/web:v1" || !spec.TTY || !spec.Stdin {
			t.Errorf("got image %q, tty %v, stdin %v; want the release's image, a TTY and stdin", spec.Image, spec.TTY, spec.Stdin)
		}
		if want := (oneoff.TermSize{Rows: 24, Cols: 80}); spec.Window != want {
			t.Errorf("got size %+v, want %+v", spec.Window, want)
		}

		got := h.stored(t, rec.ID)
		if got.State != oneoff.Pending || got.Mode != oneoff.Attached || got.ContainerID != rec.ContainerID {
			t.Errorf("got state %q, mode %q, container %q; want pending, attached, %q", got.State, got.Mode, got.ContainerID, rec.ContainerID)
		}
		if !strings.HasPrefix(got.Name, "one-off-") {
			t.Errorf("got name %q, want one-off-NNNN", got.Name)
		}
		if want := []string{"B", "C"}; !slices.Equal(got.EnvNames, want) {
			t.Errorf("got env names %q, want %q", got.EnvNames, want)
		}
		if got.Release != 1 || got.Requester != "alice" || !got.TTY {
			t.Errorf("got release %d, requester %q, tty %v; want 1, alice, true", got.Release, got.Requester, got.TTY)
		}
		if got.AttachDeadline == nil || got.AttachDeadline.Before(before.Add(time.Hour)) {
			t.Errorf("got attach deadline %v, want an hour after creation", got.AttachDeadline)
		}
		if hash := sha256.Sum256([]byte(secret)); !slices.Equal(got.SecretHash, hash[:]) {
			t.Error("the stored secret hash is not the secret's SHA-256")
		}
	})

	t.Run("no TERM without a TTY", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{Command: oneoff.Command{Line: "env"}, Term: "xterm"})
		if want := []string{"A=1", "B=2"}; !slices.Equal(h.rt.Spec(t, rec.ContainerID).Env, want) {
			t.Errorf("got env %q, want %q", h.rt.Spec(t, rec.ContainerID).Env, want)
		}
	})

	t.Run("engine failure", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.CreateErr = errdefs.Unavailable("engine_unavailable", errors.New("dial unix: no such file"), "the engine does not answer")
		_, _, err := h.m.Create(context.Background(), testApp, oneoff.Request{Command: oneoff.Command{Line: "bash"}})
		wantClass(t, err, errdefs.ErrUnavailable, "engine_unavailable")
		recs, err := h.m.List(context.Background(), oneoff.Filter{App: testApp})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("got %d records, want 1", len(recs))
		}
		if got := recs[0]; got.State != oneoff.Finished || got.Outcome != oneoff.Failed || got.Error == "" {
			t.Errorf("got state %q, outcome %q, error %q; want finished, failed, an error", got.State, got.Outcome, got.Error)
		}
	})

	t.Run("after Close", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		if err := h.m.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, _, err := h.m.Create(context.Background(), testApp, oneoff.Request{Command: oneoff.Command{Line: "bash"}})
		wantClass(t, err, errdefs.ErrUnavailable, "shutting_down")
	})
}

func TestManager_Claim(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong secret", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{})
		_, err := h.m.Claim(ctx, rec.ID, "not-the-secret", "127.0.0.1:1")
		wantClass(t, err, errdefs.ErrUnauthorized, "wrong_secret")
	})
	t.Run("another one-off's secret", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{})
		_, other := h.create(t, oneoff.Request{})
		_, err := h.m.Claim(ctx, rec.ID, other, "127.0.0.1:1")
		wantClass(t, err, errdefs.ErrUnauthorized, "wrong_secret")
	})
	t.Run("reuse", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		sess, err := h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatalf("first Claim: %v", err)
		}
		if got := sess.OneOff(); got.ID != rec.ID || got.Client != "127.0.0.1:1" {
			t.Errorf("got session of %q for client %q, want %q for 127.0.0.1:1", got.ID, got.Client, rec.ID)
		}
		_, err = h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:2")
		wantClass(t, err, errdefs.ErrConflict, "secret_used")
	})
	t.Run("after finish", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		if _, err := h.m.Stop(ctx, rec.ID, "tester"); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		_, err := h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:1")
		wantClass(t, err, errdefs.ErrConflict, "secret_used")
		_, err = h.m.Claim(ctx, rec.ID, "not-the-secret", "127.0.0.1:1")
		wantClass(t, err, errdefs.ErrUnauthorized, "wrong_secret")
	})
	t.Run("unknown id", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		_, err := h.m.Claim(ctx, "nosuchid", "secret", "127.0.0.1:1")
		wantClass(t, err, errdefs.ErrNotFound, "oneoff_not_found")
	})
}

func TestManager_attachWait(t *testing.T) {
	h := newHarness(t, oneoff.Config{AttachWait: 10 * time.Millisecond})
	rec, secret := h.create(t, oneoff.Request{})
	got := h.waitStored(t, rec.ID, oneoff.Finished)
	if got.Outcome != oneoff.AttachTimeout || got.AttachDeadline != nil || got.FinishedAt == nil {
		t.Errorf("got outcome %q, deadline %v, finished at %v; want %q, none, a time", got.Outcome, got.AttachDeadline, got.FinishedAt, oneoff.AttachTimeout)
	}
	if !h.rt.Removed(rec.ContainerID) {
		t.Error("the container was not removed")
	}
	_, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
	wantClass(t, err, errdefs.ErrConflict, "secret_used")
}

func TestManager_Stop(t *testing.T) {
	ctx := context.Background()
	t.Run("pending", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{})
		got, err := h.m.Stop(ctx, rec.ID, "tester")
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if got.State != oneoff.Finished || got.Outcome != oneoff.Stopped || got.FinishedAt == nil {
			t.Errorf("got state %q, outcome %q, finished at %v; want finished, stopped, a time", got.State, got.Outcome, got.FinishedAt)
		}
		if !h.rt.Removed(rec.ContainerID) {
			t.Error("the container was not removed")
		}
		if slices.Contains(h.rt.Calls(), "start "+rec.ContainerID) {
			t.Error("the container was started")
		}
	})
	t.Run("twice: the same answer", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{})
		if _, err := h.m.Stop(ctx, rec.ID, "tester"); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		got, err := h.m.Stop(ctx, rec.ID, "tester")
		if err != nil || got.Outcome != oneoff.Stopped {
			t.Errorf("second Stop = %s, %v; want stopped, no error", got.Outcome, err)
		}
	})
	t.Run("finished otherwise: a conflict", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{AttachWait: 10 * time.Millisecond})
		rec, _ := h.create(t, oneoff.Request{})
		h.waitStored(t, rec.ID, oneoff.Finished)
		_, err := h.m.Stop(ctx, rec.ID, "tester")
		wantClass(t, err, errdefs.ErrConflict, "oneoff_finished")
	})
	t.Run("while the container is being created", func(t *testing.T) {
		// The id is listed as soon as the record is written, so a Stop can
		// come while the engine creates the container.
		h := newHarness(t, oneoff.Config{})
		var id string
		h.rt.CreateHook = func(spec oneoff.Spec) {
			id = spec.Labels[oneoff.LabelID]
			got, err := h.m.Stop(ctx, id, "tester")
			if err != nil || got.Outcome != oneoff.Stopped {
				t.Errorf("Stop: got outcome %q, %v; want stopped", got.Outcome, err)
			}
		}
		_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "bash"}})
		if !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("Create: got %v, want ErrConflict (stopped while being created)", err)
		}
		if got := h.stored(t, id); got.State != oneoff.Finished || got.Outcome != oneoff.Stopped {
			t.Errorf("got stored state %q, outcome %q; want finished, stopped", got.State, got.Outcome)
		}
		left, err := h.rt.List(ctx, map[string]string{oneoff.LabelID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("the stopped one-off's container %s is left behind", left[0].ID)
		}
	})
	t.Run("while the container is being created, which then fails", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.CreateErr = errors.New("no such image")
		var id string
		h.rt.CreateHook = func(spec oneoff.Spec) {
			id = spec.Labels[oneoff.LabelID]
			if _, err := h.m.Stop(ctx, id, "tester"); err != nil {
				t.Errorf("Stop: %v", err)
			}
		}
		panicked := func() (p any) {
			defer func() { p = recover() }()
			_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "bash"}})
			if err == nil {
				t.Error("Create: got no error, want the engine's")
			}
			return nil
		}()
		if panicked != nil {
			t.Fatalf("Create panicked with %v", panicked)
		}
		if got := h.stored(t, id); got.State != oneoff.Finished || got.Outcome != oneoff.Stopped {
			t.Errorf("got stored state %q, outcome %q; want finished, stopped (the first end wins)", got.State, got.Outcome)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		_, err := h.m.Stop(ctx, "nosuchid", "tester")
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})
}

// running claims a new one-off and runs its session in the background.
type running struct {
	rec    oneoff.OneOff
	conn   *fakeConn
	stream *fakeruntime.Stream
	result chan oneoff.Result
}

func (h *harness) run(t *testing.T, req oneoff.Request, size oneoff.TermSize) *running {
	t.Helper()
	rec, secret := h.create(t, req)
	sess, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	r := &running{rec: rec, conn: newFakeConn(t), result: make(chan oneoff.Result, 1)}
	go func() { r.result <- sess.Run(context.Background(), r.conn, size) }()
	r.stream = h.rt.Started(t, rec.ContainerID)
	return r
}

// wait returns the session's result.
func (r *running) wait(t *testing.T) oneoff.Result {
	t.Helper()
	select {
	case res := <-r.result:
		return res
	case <-time.After(waitLimit):
		t.Fatal("the session did not end")
		return oneoff.Result{}
	}
}

// checkEnd checks the result of a session, what its user was told, its
// record and that its container is gone.
func (h *harness) checkEnd(t *testing.T, r *running, res oneoff.Result, outcome oneoff.Outcome, code int) {
	t.Helper()
	if res.Outcome != outcome {
		t.Errorf("got outcome %q, want %q", res.Outcome, outcome)
	}
	if res.ExitCode == nil || *res.ExitCode != code {
		t.Errorf("got exit code %v, want %d", res.ExitCode, code)
	}
	told := r.conn.finished()
	if len(told) != 1 || told[0].Outcome != outcome {
		t.Errorf("the user was told %+v, want once %q", told, outcome)
	}
	rec := h.stored(t, r.rec.ID)
	if rec.State != oneoff.Finished || rec.Outcome != outcome {
		t.Errorf("got stored state %q, outcome %q; want finished, %q", rec.State, rec.Outcome, outcome)
	}
	if rec.ExitCode == nil || *rec.ExitCode != code {
		t.Errorf("got stored exit code %v, want %d", rec.ExitCode, code)
	}
	if rec.StartedAt == nil || rec.FinishedAt == nil {
		t.Errorf("got started at %v, finished at %v; want both", rec.StartedAt, rec.FinishedAt)
	}
	if !h.rt.Removed(r.rec.ContainerID) {
		t.Error("the container was not removed")
	}
}

func TestSession_Run(t *testing.T) {
	t.Run("exit", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		if got := h.waitStored(t, r.rec.ID, oneoff.Running); got.Client != "127.0.0.1:1" || got.StartedAt == nil {
			t.Errorf("got stored client %q, started at %v; want 127.0.0.1:1 and a time", got.Client, got.StartedAt)
		}
		r.stream.Send(false, "hello\n")
		r.stream.Send(true, "oops\n")
		r.conn.send(t, oneoff.Input{Kind: oneoff.InputData, Data: []byte("ls\n")})
		if got := r.stream.ReadStdin(t, 3); got != "ls\n" {
			t.Errorf("got stdin %q, want %q", got, "ls\n")
		}
		h.rt.Exit(t, r.rec.ContainerID, 3, true)
		res := r.wait(t)
		h.checkEnd(t, r, res, oneoff.Exited, 3)
		if got := r.conn.stdout.String(); got != "hello\n" {
			t.Errorf("got stdout %q, want %q", got, "hello\n")
		}
		if got := r.conn.stderr.String(); got != "oops\n" {
			t.Errorf("got stderr %q, want %q", got, "oops\n")
		}
		calls := h.rt.Calls()
		end := slices.Index(calls, "output-end "+r.rec.ContainerID)
		rm := slices.Index(calls, "remove "+r.rec.ContainerID)
		if end < 0 || rm < end {
			t.Errorf("got calls %q, want the output to end before the removal", calls)
		}
	})

	t.Run("output after the exit is drained", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		r.stream.Send(false, "before ")
		h.rt.Exit(t, r.rec.ContainerID, 0, false)
		r.stream.Send(false, "after")
		r.stream.EndOutput()
		res := r.wait(t)
		h.checkEnd(t, r, res, oneoff.Exited, 0)
		if got, want := r.conn.stdout.String(), "before after"; got != want {
			t.Errorf("got stdout %q, want %q", got, want)
		}
	})

	t.Run("terminal input", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		r := h.run(t, oneoff.Request{TTY: true}, oneoff.TermSize{Rows: 24, Cols: 80})
		r.conn.send(t, oneoff.Input{Kind: oneoff.InputResize, Size: oneoff.TermSize{Rows: 50, Cols: 132}})
		r.conn.send(t, oneoff.Input{Kind: oneoff.InputSignal, Signal: "INT"})
		r.conn.send(t, oneoff.Input{Kind: oneoff.InputCloseStdin})
		// Input is handled in order: stdin ends after the resize and signal.
		eof := make(chan error, 1)
		go func() { _, err := r.stream.Stdin().Read(make([]byte, 1)); eof <- err }()
		select {
		case err := <-eof:
			if err == nil {
				t.Error("stdin did not end")
			}
		case <-time.After(waitLimit):
			t.Fatal("stdin did not end")
		}
		sizes, signals := h.rt.ResizesAndSignals(r.rec.ContainerID)
		if want := []oneoff.TermSize{{Rows: 24, Cols: 80}, {Rows: 50, Cols: 132}}; !slices.Equal(sizes, want) {
			t.Errorf("got sizes %+v, want %+v", sizes, want)
		}
		if want := []string{"INT"}; !slices.Equal(signals, want) {
			t.Errorf("got signals %q, want %q", signals, want)
		}
		h.rt.Exit(t, r.rec.ContainerID, 130, true)
		h.checkEnd(t, r, r.wait(t), oneoff.Exited, 130)
	})

	t.Run("idle timeout", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{IdleTimeout: 20 * time.Millisecond})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		res := r.wait(t)
		h.checkEnd(t, r, res, oneoff.IdleTimeout, 143)
		if calls := h.rt.Calls(); !slices.Contains(calls, "stop "+r.rec.ContainerID) {
			t.Errorf("got calls %q, want a stop", calls)
		}
	})

	t.Run("user goes away", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		r.conn.leave()
		res := r.wait(t)
		h.checkEnd(t, r, res, oneoff.Disconnected, 143)
		if calls := h.rt.Calls(); !slices.Contains(calls, "stop "+r.rec.ContainerID) {
			t.Errorf("got calls %q, want a stop", calls)
		}
	})

	t.Run("user stops reading", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		sess, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		r := &running{rec: rec, conn: newFakeConn(t), result: make(chan oneoff.Result, 1)}
		r.conn.outErr = errors.New("broken pipe")
		go func() { r.result <- sess.Run(context.Background(), r.conn, oneoff.TermSize{}) }()
		r.stream = h.rt.Started(t, rec.ContainerID)
		r.stream.Send(false, "output nobody reads")
		h.checkEnd(t, r, r.wait(t), oneoff.Disconnected, 143)
	})

	t.Run("stopped", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		got, err := h.m.Stop(context.Background(), r.rec.ID, "tester")
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if got.Outcome != oneoff.Stopped {
			t.Errorf("Stop returned outcome %q, want %q", got.Outcome, oneoff.Stopped)
		}
		h.checkEnd(t, r, r.wait(t), oneoff.Stopped, 143)
	})

	t.Run("start fails", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.StartErr = errors.New("no such image")
		rec, secret := h.create(t, oneoff.Request{})
		sess, err := h.m.Claim(context.Background(), rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		conn := newFakeConn(t)
		res := sess.Run(context.Background(), conn, oneoff.TermSize{})
		if res.Outcome != oneoff.Failed || !strings.Contains(res.Message, "no such image") {
			t.Errorf("got outcome %q, message %q; want failed, naming the cause", res.Outcome, res.Message)
		}
		if told := conn.finished(); len(told) != 1 || told[0].Outcome != oneoff.Failed {
			t.Errorf("the user was told %+v, want once %q", told, oneoff.Failed)
		}
		if got := h.stored(t, rec.ID); got.Outcome != oneoff.Failed || got.Error == "" {
			t.Errorf("got stored outcome %q, error %q; want failed, an error", got.Outcome, got.Error)
		}
		if !h.rt.Removed(rec.ContainerID) {
			t.Error("the container was not removed")
		}
	})
}

func TestManager_Reconcile(t *testing.T) {
	ctx := context.Background()
	labels := func(instance, id string) map[string]string {
		return map[string]string{oneoff.LabelManaged: "true", oneoff.LabelInstance: instance, oneoff.LabelID: id}
	}
	// insert writes a record as a previous daemon would have left it.
	insert := func(t *testing.T, h *harness, id string, state oneoff.State, containerID string) oneoff.OneOff {
		t.Helper()
		rec := oneoff.OneOff{
			ID: id, Name: "one-off-1000", App: testApp, Release: 1, Image: "img",
			Command: []string{"bash"}, Mode: oneoff.Attached, State: state, ContainerID: containerID,
			CreatedAt: time.Now().UTC(),
		}
		if err := h.db.CreateOneOff(ctx, rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}

	t.Run("container without a record is removed", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		cid := h.rt.Add(labels(testInstance, "ghost"), true)
		if err := h.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if !h.rt.Removed(cid) {
			t.Error("the stray container was not removed")
		}
	})

	t.Run("running record without a container is lost", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec := insert(t, h, "r1", oneoff.Running, "vanished")
		if err := h.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		got := h.stored(t, rec.ID)
		if got.State != oneoff.Finished || got.Outcome != oneoff.Lost || got.Error == "" {
			t.Errorf("got state %q, outcome %q, error %q; want finished, lost, an error", got.State, got.Outcome, got.Error)
		}
	})

	t.Run("running record with a container is lost and cleaned up", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		cid := h.rt.Add(labels(testInstance, "r2"), true)
		rec := insert(t, h, "r2", oneoff.Running, cid)
		if err := h.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := h.stored(t, rec.ID); got.Outcome != oneoff.Lost {
			t.Errorf("got outcome %q, want %q", got.Outcome, oneoff.Lost)
		}
		calls := h.rt.Calls()
		if !slices.Contains(calls, "stop "+cid) || !h.rt.Removed(cid) {
			t.Errorf("got calls %q, want the container stopped and removed", calls)
		}
	})

	t.Run("pending record is adopted", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		restarted := h.manager(h.cfg)
		if err := restarted.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if h.rt.Removed(rec.ContainerID) {
			t.Fatal("the pending one-off's container was removed")
		}
		if got := h.stored(t, rec.ID); got.State != oneoff.Pending {
			t.Errorf("got state %q, want pending", got.State)
		}
		sess, err := restarted.Claim(ctx, rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatalf("Claim after the restart: %v", err)
		}
		conn := newFakeConn(t)
		result := make(chan oneoff.Result, 1)
		go func() { result <- sess.Run(ctx, conn, oneoff.TermSize{}) }()
		h.rt.Started(t, rec.ContainerID)
		h.rt.Exit(t, rec.ContainerID, 0, true)
		r := &running{rec: rec, conn: conn, result: result}
		h.checkEnd(t, r, r.wait(t), oneoff.Exited, 0)
	})

	t.Run("pending record past its deadline is discarded", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, _ := h.create(t, oneoff.Request{})
		cfg := h.cfg
		cfg.Now = func() time.Time { return time.Now().Add(time.Hour) }
		restarted := h.manager(cfg)
		if err := restarted.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := h.stored(t, rec.ID); got.State != oneoff.Finished || got.Outcome != oneoff.AttachTimeout {
			t.Errorf("got state %q, outcome %q; want finished, %q", got.State, got.Outcome, oneoff.AttachTimeout)
		}
		if !h.rt.Removed(rec.ContainerID) {
			t.Error("the container was not removed")
		}
	})

	t.Run("followed one-off is left alone", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, secret := h.create(t, oneoff.Request{})
		if err := h.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if h.rt.Removed(rec.ContainerID) {
			t.Error("the container was removed")
		}
		if _, err := h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:1"); err != nil {
			t.Errorf("Claim: %v", err)
		}
	})

	t.Run("another instance's container is left alone", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		cid := h.rt.Add(labels("other-instance", "theirs"), true)
		if err := h.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if h.rt.Removed(cid) || slices.Contains(h.rt.Calls(), "stop "+cid) {
			t.Errorf("got calls %q, want the other instance's container untouched", h.rt.Calls())
		}
	})

	t.Run("Start reconciles", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		cid := h.rt.Add(labels(testInstance, "ghost"), false)
		if err := h.m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.m.Close(ctx) })
		if !h.rt.Removed(cid) {
			t.Error("the stray container was not removed")
		}
	})
}

func TestManager_Close(t *testing.T) {
	h := newHarness(t, oneoff.Config{})
	pending, _ := h.create(t, oneoff.Request{})
	r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no patience: stop the sessions at once
	if err := h.m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	h.checkEnd(t, r, r.wait(t), oneoff.Stopped, 143)
	if h.rt.Removed(pending.ContainerID) {
		t.Error("the pending one-off's container was removed")
	}
	if got := h.stored(t, pending.ID); got.State != oneoff.Pending {
		t.Errorf("got pending one-off's state %q, want pending", got.State)
	}
}
