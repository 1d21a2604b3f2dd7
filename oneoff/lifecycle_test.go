package oneoff_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

// TestManager_detachedLifecycle checks the lines a detached one-off's
// start and end add to its app's log, under its name, once each.
func TestManager_detachedLifecycle(t *testing.T) {
	ctx := context.Background()
	starting := "Starting process with command `job`"
	tests := []struct {
		name string
		cfg  oneoff.Config
		ttl  time.Duration
		end  func(t *testing.T, h *harness, rec oneoff.OneOff)
		want string
	}{
		{name: "exited", end: func(t *testing.T, h *harness, rec oneoff.OneOff) { h.rt.Exit(t, rec.ContainerID, 3, false) },
			want: "Process exited with status 3"},
		{name: "stopped", end: func(t *testing.T, h *harness, rec oneoff.OneOff) {
			if _, err := h.m.Stop(ctx, rec.ID, "alice@laptop"); err != nil {
				t.Fatal(err)
			}
		}, want: "Process stopped by alice@laptop, status 143"},
		{name: "lifetime exceeded", cfg: oneoff.Config{MaxLifetime: time.Hour}, ttl: 20 * time.Millisecond,
			want: "Process stopped: it ran past its lifetime of 0s, status 143"},
		{name: "out of memory", end: func(t *testing.T, h *harness, rec oneoff.OneOff) {
			h.rt.OOM(t, rec.ContainerID)
			h.rt.Exit(t, rec.ContainerID, 137, false)
		}, want: "Process killed: out of memory (size "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			rec, _ := h.startDetached(t, tt.ttl)
			if tt.end != nil {
				tt.end(t, h, rec)
			}
			h.waitStored(t, rec.ID, oneoff.Finished)
			got := h.lifecycle(rec.Name)
			if len(got) != 2 || got[0] != starting || !strings.HasPrefix(got[1], tt.want) {
				t.Errorf("lifecycle lines %q, want %q then one starting %q", got, starting, tt.want)
			}
		})
	}

	t.Run("adopted by a restarted daemon: each line once", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		if err := h.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		m2 := h.manager(h.cfg)
		if err := m2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m2.Close(ctx) })
		h.rt.Exit(t, cid, 0, false)
		h.waitStored(t, rec.ID, oneoff.Finished)
		want := []string{starting, "Process exited with status 0"}
		if got := h.lifecycle(rec.Name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("lifecycle lines %q, want %q", got, want)
		}
	})
}

// TestManager_detachedLifecycleReconciled checks the end line of a
// detached job whose container a restarted daemon no longer finds.
func TestManager_detachedLifecycleReconciled(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, oneoff.Config{})
	started := time.Now().UTC()
	rec := oneoff.OneOff{ID: "gone1", Name: "one-off-4242", App: testApp, Release: 1, Image: "img", Command: []string{"job"},
		Mode: oneoff.Detached, State: oneoff.Running, ContainerID: "vanished", CreatedAt: started, StartedAt: &started}
	if err := h.db.CreateOneOff(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.lifecycle(rec.Name); len(got) != 1 || got[0] != "Process lost: its container disappeared" {
		t.Errorf("lifecycle lines %q, want the loss said once", got)
	}
}
