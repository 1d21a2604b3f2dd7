package oneoff

import (
	"context"
	"errors"
	"time"
)

// pruneInterval is how often the records past their retention are deleted.
const pruneInterval = time.Hour

// Prune deletes the records of the one-offs that finished longer than the
// record retention ago, and the audit trail's events older than that.
// Unfinished one-offs are never pruned.
func (m *Manager) Prune(ctx context.Context) error {
	before := m.cfg.Now().Add(-m.cfg.RecordRetention)
	oneoffs, errO := m.store.PruneOneOffs(ctx, before)
	events, errA := m.store.PruneAudit(ctx, before)
	casts, errR := m.pruneRecordings(before)
	if casts > 0 {
		m.log.Info("session recordings past their retention deleted", "recordings", casts)
	}
	m.met.recordsPruned.WithLabelValues("oneoff").Add(float64(oneoffs))
	m.met.recordsPruned.WithLabelValues("audit").Add(float64(events))
	if oneoffs > 0 || events > 0 {
		m.log.Info("records past their retention deleted", "oneoffs", oneoffs, "audit_events", events,
			"retention", m.cfg.RecordRetention)
	}
	return errors.Join(errO, errA, errR)
}

// prune runs Prune, logging rather than failing: the next round retries.
func (m *Manager) prune(ctx context.Context) {
	if err := m.Prune(ctx); err != nil {
		m.log.Warn("prune records failed; will retry", "err", err)
	}
}
