package oneoff

import (
	"context"
	"fmt"
)

// Reconcile makes the engine and the records agree. A container of this
// daemon that no unfinished record claims is removed. An unfinished record
// that this process does not follow is adopted when it is a detached
// one-off whose container is there, or a pending one-off still waiting for
// its terminal; otherwise it is finished as lost, its container stopped and
// removed: its terminal went away with the process that served it.
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
	byID := make(map[string]Container, len(containers))
	for _, c := range containers {
		byID[c.Labels[LabelID]] = c
	}
	claimed := make(map[string]bool, len(open))
	for _, rec := range open {
		claimed[rec.ID] = true
		if m.lookup(rec.ID) != nil {
			continue
		}
		c, ok := byID[rec.ID]
		m.settle(ctx, rec, c, ok)
	}
	for _, c := range containers {
		id := c.Labels[LabelID]
		if claimed[id] || m.lookup(id) != nil {
			continue
		}
		m.log.Info("removing a container no one-off claims", "container", shortID(c.ID), "oneoff", id)
		if err := m.rt.Remove(ctx, c.ID); err != nil {
			m.log.Warn("remove stray container failed", "container", shortID(c.ID), "err", err)
		}
	}
	return m.rt.Prune(ctx)
}

// settle adopts or ends an unfinished one-off that no session follows.
func (m *Manager) settle(ctx context.Context, rec OneOff, c Container, exists bool) {
	l := newLive(rec)
	if exists {
		l.markReady(nil)
	}
	m.mu.Lock()
	if m.live[rec.ID] != nil {
		m.mu.Unlock()
		return
	}
	m.live[rec.ID] = l
	m.mu.Unlock()

	now := m.cfg.Now()
	switch {
	case rec.Mode == Detached && rec.State == Running && exists:
		l.rec.ContainerID = c.ID
		m.adoptDetached(l)
	case rec.Mode == Detached && exists:
		l.requestStop(Failed)
		m.discard(l, Failed, "the daemon stopped before the one-off started")
	case rec.State == Pending && exists && !c.Running && rec.AttachDeadline != nil && rec.AttachDeadline.After(now):
		l.rec.ContainerID = c.ID
		m.log.Info("adopting a pending one-off", "oneoff", rec.ID, "app", rec.App, "until", rec.AttachDeadline)
		m.armAttachWait(l, rec.AttachDeadline.Sub(now))
	case rec.State == Pending && exists:
		l.requestStop(AttachTimeout)
		m.met.attachExpiries.Inc()
		m.audit(rec, AuditReap, ActorDaemon, "nobody attached before the daemon restarted and its wait ended")
		m.discard(l, AttachTimeout, "")
	case exists:
		l.requestStop(Lost)
		if c.Running {
			if err := m.rt.Stop(ctx, c.ID, m.cfg.StopGrace); err != nil {
				m.log.Warn("stop lost container failed", "oneoff", rec.ID, "err", err)
			}
		}
		m.discard(l, Lost, "the daemon restarted while it ran, and its terminal went away")
	default:
		l.requestStop(Lost)
		m.finish(l, Lost, nil, "its container disappeared")
	}
}
