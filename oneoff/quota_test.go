package oneoff_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestManager_quota(t *testing.T) {
	ctx := context.Background()
	bash := oneoff.Request{Command: oneoff.Command{Args: []string{"bash"}}, TTY: true}

	t.Run("per app: refused with what runs, free again once one ends", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{MaxPerApp: 2})
		a, _ := h.create(t, bash)
		b, _ := h.create(t, oneoff.Request{Command: oneoff.Command{Line: "job"}, Detached: true})
		_, _, err := h.m.Create(ctx, testApp, bash)
		e := wantClass(t, err, errdefs.ErrQuota, "oneoff_quota_app")
		for _, want := range []string{"app web already runs 2 one-offs", a.Name, b.Name, "--max-oneoffs-per-app"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q does not say %q", e.Message, want)
			}
		}
		if _, err := h.m.Stop(ctx, a.ID, "tester"); err != nil {
			t.Fatal(err)
		}
		h.create(t, bash)
	})

	t.Run("overall: counts every app", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{MaxPerApp: 5, MaxTotal: 2})
		if _, err := h.deploys.Deploy(ctx, "api", deploy.Spec{Image: "registry.example.com/api:v1"}); err != nil {
			t.Fatal(err)
		}
		h.create(t, bash)
		if _, _, err := h.m.Create(ctx, "api", bash); err != nil {
			t.Fatal(err)
		}
		_, _, err := h.m.Create(ctx, testApp, bash)
		e := wantClass(t, err, errdefs.ErrQuota, "oneoff_quota_total")
		if !strings.Contains(e.Message, "--max-oneoffs") {
			t.Errorf("message %q does not name the flag", e.Message)
		}
	})

	t.Run("adopted one-offs count after a restart", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{MaxPerApp: 1})
		h.create(t, bash)
		restarted := h.manager(h.cfg)
		if err := restarted.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		_, _, err := restarted.Create(ctx, testApp, bash)
		wantClass(t, err, errdefs.ErrQuota, "oneoff_quota_app")
	})

	t.Run("concurrent creates never share the last slots", func(t *testing.T) {
		const slots, tries = 3, 10
		h := newHarness(t, oneoff.Config{MaxPerApp: slots})
		var inCreate, refused atomic.Int32
		gate := make(chan struct{})
		h.rt.CreateHook = func(oneoff.Spec) {
			inCreate.Add(1)
			<-gate // every create that passed stays in flight until all have tried
		}
		var wg sync.WaitGroup
		errs := make(chan error, tries)
		for range tries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := h.m.Create(ctx, testApp, bash)
				if errors.Is(err, errdefs.ErrQuota) {
					refused.Add(1)
				}
				errs <- err
			}()
		}
		deadline := time.Now().Add(waitLimit)
		for inCreate.Load()+refused.Load() < tries && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(gate)
		wg.Wait()
		close(errs)
		var ok int
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, errdefs.ErrQuota):
				t.Errorf("Create: %v", err)
			}
		}
		if ok != slots || refused.Load() != tries-slots {
			t.Errorf("%d created, %d refused; want %d and %d", ok, refused.Load(), slots, tries-slots)
		}
	})
}
