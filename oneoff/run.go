package oneoff

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// run is what an attached one-off's session and a detached one-off's
// follower share while the container's command runs: the record of the
// start, one stop of the container whatever asked first, the end of the
// lifetime, and the end, decided the same way for both.
type run struct {
	m   *Manager
	h   *handle
	rec OneOff // as it started
	log *slog.Logger
	// ctx bounds the calls to the engine made for the run.
	ctx      context.Context
	stopping sync.Once
}

// markRunning records that h's command started and returns its run.
func (m *Manager) markRunning(ctx context.Context, h *handle) *run {
	rec := h.markRunning(m.cfg.Now().UTC())
	r := m.newRun(ctx, h, rec)
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		r.log.Warn("record start failed", "err", err)
	}
	m.started(rec)
	return r
}

// newRun returns the run of h, started before, as rec says.
func (m *Manager) newRun(ctx context.Context, h *handle, rec OneOff) *run {
	return &run{m: m, h: h, rec: rec, ctx: context.WithoutCancel(ctx),
		log: m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)}
}

// stop records why the one-off must stop, the reason recorded first
// winning, and stops its container, once.
func (r *run) stop(why Outcome) {
	r.h.requestStop(why)
	r.stopping.Do(r.stopContainer)
}

// stopAgain stops the container once more, as asked before, for an engine
// that may have gone away before it did.
func (r *run) stopAgain() { r.stopContainer() }

func (r *run) stopContainer() {
	go func() {
		if err := r.m.rt.Stop(r.ctx, r.rec.ContainerID, r.m.cfg.StopGrace); err != nil {
			r.log.Error("stop container failed", "err", err)
		}
	}()
}

// lifetimeOver stops a one-off that ran for as long as it may; detail says
// how long, for the audit trail.
func (r *run) lifetimeOver(detail string) {
	r.m.met.lifetimeStops.Inc()
	r.m.audit(r.rec, AuditReap, ActorDaemon, detail)
	r.stop(LifetimeExceeded)
}

// lifetimeTimer returns a timer that fires once the run's lifetime is over:
// at deadline, or never without one.
func lifetimeTimer(deadline *time.Time) *time.Timer {
	if deadline == nil {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTimer(time.Until(*deadline))
}

// ending decides how the run ended, from the exit its container came to.
func (r *run) ending(exit Exit, engineWasGone bool) ending {
	return r.m.decide(r.h, exit, engineWasGone)
}

// end records how the run ended, removes its container and finishes the
// one-off.
func (r *run) end(e ending) { r.m.endRun(r.ctx, r.h, e) }
