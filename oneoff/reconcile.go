package oneoff

import (
	"context"
	"fmt"
	"time"
)

// Reconcile makes the engine and the records agree, matching containers to
// records by the one-off id in the containers' own labels, never by the
// container id a record may not have received before a crash:
//
//   - a container of this daemon that no unfinished record claims is
//     removed;
//   - a one-off whose end was recorded before its container's removal
//     is finished with that outcome, its container removed if still there;
//   - a detached one-off whose container was started is adopted, even when
//     its record still says pending: its log is read from where the stored
//     lines end, and its exit recorded;
//   - a pending attached one-off whose container was created but not
//     started is adopted until its attach deadline (and learns its
//     container's id), or discarded once the deadline has passed;
//   - any other unfinished one-off is finished: failed when the daemon
//     stopped before its container was ready, lost when it ran and its
//     terminal went away, or when its container disappeared. Its container
//     is stopped and removed.
//
// One-offs that this process follows are left alone.
func (m *Manager) Reconcile(ctx context.Context) error {
	// Containers first, records second: a record is always written before
	// its container is created, so no container can be seen without it.
	containers, err := m.rt.List(ctx, map[string]string{LabelManaged: "true", LabelInstance: m.cfg.Instance})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var open []OneOff
	for _, st := range []State{Pending, Running} {
		recs, err := m.store.OneOffs(ctx, Filter{State: st})
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		open = append(open, recs...)
	}
	byID := make(map[string][]Container, len(containers))
	for _, c := range containers {
		id := c.Labels[LabelID]
		byID[id] = append(byID[id], c)
	}
	kept := make(map[string]bool, len(open))
	for _, rec := range open {
		if m.lookup(rec.ID) != nil {
			for _, c := range byID[rec.ID] {
				kept[c.ID] = true
			}
			continue
		}
		c, ok := pick(rec, byID[rec.ID])
		if ok {
			kept[c.ID] = true
		}
		m.settle(ctx, rec, c, ok)
	}
	for _, c := range containers {
		id := c.Labels[LabelID]
		if kept[c.ID] || m.lookup(id) != nil {
			continue
		}
		m.log.Info("removing a container no one-off claims", "container", shortID(c.ID), "oneoff", id)
		if err := m.rt.Remove(ctx, c.ID); err != nil {
			m.log.Warn("remove stray container failed", "container", shortID(c.ID), "err", err)
		}
	}
	return m.rt.Prune(ctx)
}

// pick returns the container of rec among those labelled with its id: the
// one the record names, else the first, made by a create whose result the
// record never received. The others are strays.
func pick(rec OneOff, cs []Container) (Container, bool) {
	for _, c := range cs {
		if c.ID == rec.ContainerID {
			return c, true
		}
	}
	if len(cs) > 0 {
		return cs[0], true
	}
	return Container{}, false
}

// settle adopts or ends an unfinished one-off that no one follows, listed
// as listed, whose container, if it exists, is c.
func (m *Manager) settle(ctx context.Context, listed OneOff, c Container, exists bool) {
	// Followed first, then read again: the record listed may have
	// finished since, its follower gone; once followed here, nothing
	// else changes it.
	h := newHandle(listed)
	m.mu.Lock()
	if m.handles[listed.ID] != nil {
		m.mu.Unlock()
		return
	}
	m.handles[listed.ID] = h
	m.mu.Unlock()
	rec, err := m.store.OneOff(ctx, listed.ID)
	if err != nil || rec.State == Finished {
		if err != nil {
			m.log.Warn("read one-off to reconcile failed; will retry", "oneoff", listed.ID, "err", err)
		}
		m.forget(listed.ID)
		return
	}
	recorded := rec.ContainerID // empty when the daemon died before it knew it
	if exists {
		rec.ContainerID = c.ID
	}
	h.update(func(r *OneOff) { *r = rec })
	if exists {
		h.markReady(nil)
	}
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)

	now := m.cfg.Now()
	switch {
	case rec.Step == StepRemove && rec.Outcome != "":
		// It ended and said how; the daemon died removing its container.
		h.requestStop(rec.Outcome)
		if exists {
			if err := m.rt.Remove(ctx, c.ID); err != nil {
				log.Warn("remove container failed; will retry", "container", shortID(c.ID), "err", err)
			}
		}
		m.finish(h, rec.Outcome, rec.ExitCode, rec.Error)
	case rec.Mode == Detached && exists && c.Started:
		if rec.State == Pending {
			// It started, but the daemon stopped before its record said so.
			m.markAdopted(ctx, h, now)
		}
		m.adoptDetached(h)
	case exists && rec.Step == StepUpload:
		h.requestStop(Failed)
		m.discard(h, Failed, "the daemon stopped while the one-off's files were being copied in")
	case rec.Mode == Detached && exists:
		h.update(func(r *OneOff) { r.StartedAt, r.ExpiresAt = nil, nil }) // the start was meant, not made
		h.requestStop(Failed)
		m.logDetachedEnd(rec, "Process failed to start: the daemon stopped before it started")
		m.discard(h, Failed, "the daemon stopped before the one-off started")
	case exists && (rec.State == Running || c.Started):
		h.requestStop(Lost)
		if c.Running {
			if err := m.rt.Stop(ctx, c.ID, m.cfg.StopGrace); err != nil {
				log.Warn("stop lost container failed", "err", err)
			}
		}
		m.discard(h, Lost, "the daemon restarted while it ran, and its terminal went away")
	case exists && rec.AttachDeadline != nil && rec.AttachDeadline.After(now):
		if rec.Step != StepNone || recorded != c.ID {
			rec = h.update(func(r *OneOff) { r.Step = StepNone })
			if err := m.store.UpdateOneOff(ctx, rec); err != nil {
				log.Warn("record the adopted container failed", "err", err)
			}
		}
		log.Info("adopting a pending one-off", "container", shortID(c.ID), "until", rec.AttachDeadline)
		m.armAttachWait(h, rec.AttachDeadline.Sub(now))
	case exists:
		h.requestStop(AttachTimeout)
		m.met.attachExpiries.Inc()
		m.audit(rec, AuditReap, ActorDaemon, "nobody attached before the daemon restarted and its wait ended")
		m.discard(h, AttachTimeout, "")
	case rec.State == Pending && (rec.Step == StepCreate || rec.Step == StepUpload):
		h.requestStop(Failed)
		m.finish(h, Failed, nil, "the daemon stopped before the one-off's container was created")
	default:
		h.requestStop(Lost)
		m.logDetachedEnd(rec, "Process lost: its container disappeared")
		m.finish(h, Lost, nil, "its container disappeared")
	}
}

// markAdopted records as running a detached one-off found started whose
// record still says pending.
func (m *Manager) markAdopted(ctx context.Context, h *handle, now time.Time) {
	rec := h.markAdopted(now.UTC(), m.cfg.MaxLifetime)
	m.log.Info("a detached one-off started before the daemon stopped; recording it running", "oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Warn("record the adopted start failed", "oneoff", rec.ID, "err", err)
	}
	m.met.started.WithLabelValues(string(rec.Mode), rec.Size).Inc()
}
