package oneoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestManager_Prune(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, oneoff.Config{RecordRetention: 30 * 24 * time.Hour})
	done, _ := h.create(t, oneoff.Request{})
	if _, err := h.m.Stop(ctx, done.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	open, _ := h.create(t, oneoff.Request{})

	t.Run("within the retention, all is kept", func(t *testing.T) {
		if err := h.m.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		h.stored(t, done.ID)
		if events, _ := h.db.Audit(ctx, oneoff.AuditFilter{OneOffID: done.ID}); len(events) == 0 {
			t.Error("the audit trail was pruned within the retention")
		}
	})

	t.Run("past it, finished records and old events go", func(t *testing.T) {
		cfg := h.cfg
		cfg.RecordRetention = 30 * 24 * time.Hour
		cfg.Now = func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
		later := h.manager(cfg)
		if err := later.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := h.db.OneOff(ctx, done.ID); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("the finished one-off: %v, want it pruned", err)
		}
		if got := h.stored(t, open.ID); got.State != oneoff.Pending {
			t.Errorf("the unfinished one-off is %s, want it kept pending", got.State)
		}
		if events, _ := h.db.Audit(ctx, oneoff.AuditFilter{}); len(events) != 0 {
			t.Errorf("%d audit events left, want none", len(events))
		}
	})
}
