package oneoff_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
)

// errEngineGone is what a runtime says when its engine went away.
var errEngineGone = errdefs.Unavailable(oneoff.CodeEngineUnavailable, io.ErrUnexpectedEOF, "the Docker engine went away")

// flakyEngine is a fake runtime whose engine can go away and come back:
// while it is away, the waits it gave end with errEngineGone and every
// call fails with it.
type flakyEngine struct {
	*fakeruntime.Runtime
	mu    sync.Mutex
	away  chan struct{} // closed while the engine is away
	lists int           // Lists refused while away
}

func newFlakyEngine(rt *fakeruntime.Runtime) *flakyEngine {
	return &flakyEngine{Runtime: rt}
}

func (e *flakyEngine) goAway() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.away = make(chan struct{})
	close(e.away)
}

func (e *flakyEngine) comeBack() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.away = nil
}

func (e *flakyEngine) isAway() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.away != nil
}

func (e *flakyEngine) Wait(ctx context.Context, id string) <-chan oneoff.Exit {
	if e.isAway() {
		out := make(chan oneoff.Exit, 1)
		out <- oneoff.Exit{Code: -1, Err: errEngineGone}
		return out
	}
	return e.watch(e.Runtime.Wait(ctx, id))
}

func (e *flakyEngine) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	if e.isAway() {
		return oneoff.Process{}, errEngineGone
	}
	p, err := e.Runtime.Start(ctx, id, opts)
	if err == nil {
		p.Exit = e.watch(p.Exit)
	}
	return p, err
}

// watch passes inner's exit on, or errEngineGone once the engine goes away.
func (e *flakyEngine) watch(inner <-chan oneoff.Exit) <-chan oneoff.Exit {
	out := make(chan oneoff.Exit, 1)
	go func() {
		for {
			e.mu.Lock()
			away := e.away
			e.mu.Unlock()
			select {
			case x := <-inner:
				out <- x
				return
			case <-away: // nil, never ready, until the engine goes away
				out <- oneoff.Exit{Code: -1, Err: errEngineGone}
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return out
}

func (e *flakyEngine) Logs(ctx context.Context, id string, opts oneoff.LogOptions) (oneoff.LogReader, error) {
	if e.isAway() {
		return nil, errEngineGone
	}
	return e.Runtime.Logs(ctx, id, opts)
}

func (e *flakyEngine) List(ctx context.Context, labels map[string]string) ([]oneoff.Container, error) {
	if e.isAway() {
		e.mu.Lock()
		e.lists++
		e.mu.Unlock()
		return nil, errEngineGone
	}
	return e.Runtime.List(ctx, labels)
}

func (e *flakyEngine) Remove(ctx context.Context, id string) error {
	if e.isAway() {
		return errEngineGone
	}
	return e.Runtime.Remove(ctx, id)
}

func (e *flakyEngine) Stop(ctx context.Context, id string, grace time.Duration) error {
	if e.isAway() {
		return errEngineGone
	}
	return e.Runtime.Stop(ctx, id, grace)
}

// waitRefusedLists waits until the follower has asked the absent engine n
// times whether it is back.
func (e *flakyEngine) waitRefusedLists(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		e.mu.Lock()
		got := e.lists
		e.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls to the absent engine, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManager_detachedEngineGone(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (*harness, *flakyEngine, oneoff.OneOff, string) {
		h := newHarness(t, oneoff.Config{})
		eng := newFlakyEngine(h.rt)
		h.m = oneoff.NewManager(h.cfg, eng, h.db, h.deploys, h.logs, slog.New(slog.DiscardHandler))
		t.Cleanup(func() { h.m.Close(context.Background()) })
		rec, cid := h.startDetached(t, 0)
		h.rt.Log(t, cid, entry(t0, "stdout", "line 1\n"))
		h.rt.Log(t, cid, entry(t0.Add(1), "stdout", "line 2\n"))
		waitTexts(t, h, rec.Name, 2)
		eng.goAway()
		eng.waitRefusedLists(t, 2) // waiting, not spinning: see maxEngineWait
		if got := h.stored(t, rec.ID); got.State != oneoff.Running {
			t.Fatalf("while the engine is away the record is %s/%s, want still running", got.State, got.Outcome)
		}
		return h, eng, rec, cid
	}

	t.Run("a job still running is followed again, no line twice", func(t *testing.T) {
		h, eng, rec, cid := setup(t)
		h.rt.Log(t, cid, entry(t0.Add(2), "stdout", "line 3\n")) // written while away
		eng.comeBack()
		h.rt.Log(t, cid, entry(t0.Add(3), "stdout", "line 4\n"))
		waitTexts(t, h, rec.Name, 4)
		h.rt.Exit(t, cid, 0, false)
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Exited || f.ExitCode == nil || *f.ExitCode != 0 {
			t.Errorf("finished %s/%v, want exited/0", f.Outcome, f.ExitCode)
		}
		want := "stdout:line 1|stdout:line 2|stdout:line 3|stdout:line 4"
		if got := strings.Join(h.texts(rec.Name), "|"); got != want {
			t.Errorf("lines = %s, want %s", got, want)
		}
		if !h.rt.Removed(cid) {
			t.Error("container not removed")
		}
	})
	t.Run("a job the engine lost is recorded lost", func(t *testing.T) {
		h, eng, rec, cid := setup(t)
		h.rt.Exit(t, cid, 255, false) // as an engine restarted without it says
		eng.comeBack()
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Lost || !strings.Contains(f.Error, "engine went away") {
			t.Errorf("finished %s (%q), want lost, saying the engine went away", f.Outcome, f.Error)
		}
		if !h.rt.Removed(cid) {
			t.Error("container not removed")
		}
	})
	t.Run("a job that exited by itself keeps its code", func(t *testing.T) {
		h, eng, rec, cid := setup(t)
		h.rt.Exit(t, cid, 3, false)
		eng.comeBack()
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Exited || f.ExitCode == nil || *f.ExitCode != 3 {
			t.Errorf("finished %s/%v, want exited/3", f.Outcome, f.ExitCode)
		}
	})
	t.Run("a stop asked while the engine is away is done once it is back", func(t *testing.T) {
		h, eng, rec, cid := setup(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if got, _ := h.m.Stop(ctx, rec.ID, "tester"); got.State == oneoff.Finished {
			t.Fatalf("stopped while the engine is away: %s/%s", got.State, got.Outcome)
		}
		eng.comeBack()
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Stopped || !h.rt.Removed(cid) {
			t.Errorf("finished %s, removed %v; want stopped and removed", f.Outcome, h.rt.Removed(cid))
		}
	})
	t.Run("a job whose container vanished is recorded lost", func(t *testing.T) {
		h, eng, rec, cid := setup(t)
		if err := h.rt.Remove(context.Background(), cid); err != nil {
			t.Fatal(err)
		}
		eng.comeBack()
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Lost || !strings.Contains(f.Error, "disappeared") {
			t.Errorf("finished %s (%q), want lost, saying its container disappeared", f.Outcome, f.Error)
		}
	})
}

// waitTexts waits until source has n lines in the log.
func waitTexts(t *testing.T, h *harness, source string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for len(h.texts(source)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("lines %q, want %d", h.texts(source), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
