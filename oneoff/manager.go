package oneoff

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// The labels that mark a container as a one-off of this daemon.
const (
	LabelManaged  = "io.oneoffd.managed"
	LabelInstance = "io.oneoffd.instance"
	LabelID       = "io.oneoffd.id"
	LabelApp      = "io.oneoffd.app"
	LabelName     = "io.oneoffd.name"
	LabelMode     = "io.oneoffd.mode"
)

// Manager creates one-offs, hands their terminals over and makes sure each
// one ends and leaves nothing behind.
type Manager struct {
	cfg      Config
	rt       Runtime
	store    Store
	releases Releases
	logs     LogSink
	log      *slog.Logger
	met      *metrics

	mu sync.Mutex
	// handles holds the one-offs not finished yet, by id.
	handles map[string]*handle
	closing bool
	wg      sync.WaitGroup // attached sessions
	bg      sync.WaitGroup // detached one-offs' followers
	// resumes holds the resumable sessions by one-off id.
	resumes sync.Map

	// ctx ends at Close: the reconcile loop and the followers of detached
	// one-offs stop with it, leaving the jobs running for the next start.
	ctx    context.Context
	cancel context.CancelFunc
	loop   chan struct{}
}

// NewManager returns a Manager; call Start before use. Detached one-offs'
// output goes to logs.
func NewManager(cfg Config, rt Runtime, store Store, releases Releases, logs LogSink, log *slog.Logger) *Manager {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, rt: rt, store: store, releases: releases, logs: logs, log: log,
		met: newMetrics(cfg.Metrics, cfg.Sizes), handles: map[string]*handle{}, ctx: ctx, cancel: cancel}
}

// Config returns the effective configuration.
func (m *Manager) Config() Config { return m.cfg }

// Start reconciles the engine with the records, adopting the detached
// one-offs still running, then keeps reconciling in the background until
// Close. An engine that does not answer yet is not an error: the next
// round retries.
func (m *Manager) Start(ctx context.Context) error {
	m.loop = make(chan struct{})
	if err := m.Reconcile(ctx); err != nil {
		m.log.Warn("reconcile failed; will retry", "err", err)
	}
	go func() {
		defer close(m.loop)
		m.prune(m.ctx) // in the background: a backlog must not delay the start
		t := time.NewTicker(m.cfg.ReconcileInterval)
		defer t.Stop()
		pt := time.NewTicker(pruneInterval)
		defer pt.Stop()
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-t.C:
				if err := m.Reconcile(m.ctx); err != nil {
					m.log.Warn("reconcile failed; will retry", "err", err)
				}
			case <-pt.C:
				m.prune(m.ctx)
			}
		}
	}()
	return nil
}

// Close refuses new one-offs, waits until ctx is done for attached sessions
// to end, then stops those still running. Pending one-offs are kept: their
// containers and secrets survive a restart.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.cancel()
	if m.loop != nil {
		<-m.loop
	}
	m.bg.Wait()
	sessions := make(chan struct{})
	go func() { m.wg.Wait(); close(sessions) }()
	select {
	case <-sessions:
	case <-ctx.Done():
		m.mu.Lock()
		for _, h := range m.handles {
			if h.isClaimed() {
				h.requestStop(Stopped)
			}
		}
		m.mu.Unlock()
		<-sessions
	}
	m.mu.Lock()
	for _, h := range m.handles {
		h.stopTimer()
	}
	m.mu.Unlock()
	return nil
}

// Done returns a channel closed once one-off id has finished: output
// drained, container removed, record written.
func (m *Manager) Done(id string) <-chan struct{} {
	if h := m.lookup(id); h != nil {
		return h.done
	}
	done := make(chan struct{})
	close(done)
	return done
}

// armAttachWait discards h if no terminal claims it within d.
func (m *Manager) armAttachWait(h *handle, d time.Duration) {
	h.armTimer(d, func() {
		if h.stopUnclaimed(AttachTimeout) {
			m.log.Info("nobody attached in time; discarding", "oneoff", h.id, "app", h.app, "wait", m.cfg.AttachWait)
			m.met.attachExpiries.Inc()
			m.audit(h.snapshot(), AuditReap, ActorDaemon, fmt.Sprintf("nobody attached within %s", m.cfg.AttachWait))
			m.discard(h, AttachTimeout, "")
		}
	})
}

// Get returns a one-off's record.
func (m *Manager) Get(ctx context.Context, id string) (OneOff, error) {
	if h := m.lookup(id); h != nil {
		return h.current(), nil
	}
	return m.store.OneOff(ctx, id)
}

// List returns the records that pass f, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]OneOff, error) {
	return m.store.OneOffs(ctx, f)
}

// Stop ends a one-off: a pending one is discarded, a running one gets
// SIGTERM, then SIGKILL after the grace period. It returns once the one-off
// has finished, or when ctx is done. Stopping a stopping one-off is fine;
// stopping a finished one is a conflict.
func (m *Manager) Stop(ctx context.Context, id, actor string) (OneOff, error) {
	h := m.lookup(id)
	if h == nil {
		rec, err := m.store.OneOff(ctx, id)
		if err != nil {
			return OneOff{}, err
		}
		if rec.Outcome == Stopped {
			return rec, nil // stopped already: asking again changes nothing
		}
		return rec, errdefs.Conflict("oneoff_finished", "one-off %s already finished (%s)", rec.Name, describe(rec))
	}
	by := actor
	if by == "" {
		by = "a client of the API"
	}
	h.stopBy(by)
	switch {
	case h.stopUnclaimed(Stopped):
		m.log.Info("stop requested; discarding the unstarted container", "oneoff", id, "app", h.app, "actor", actor)
		m.audit(h.snapshot(), AuditStop, actor, "before it started")
		m.discard(h, Stopped, "")
	case h.requestStop(Stopped):
		m.log.Info("stop requested", "oneoff", id, "app", h.app, "actor", actor)
		m.audit(h.snapshot(), AuditStop, actor, fmt.Sprintf("SIGTERM, then SIGKILL after %s", m.cfg.StopGrace))
	}
	select {
	case <-h.done:
	case <-ctx.Done():
		return m.Get(context.WithoutCancel(ctx), id)
	}
	return m.store.OneOff(context.WithoutCancel(ctx), id)
}

// Claim checks an attach secret and hands the one-off's terminal to the
// caller, once: a second claim with the same secret is refused.
func (m *Manager) Claim(ctx context.Context, id, secret, client string) (*Session, error) {
	hash := sha256.Sum256([]byte(secret))
	h := m.lookup(id)
	if h == nil {
		rec, err := m.store.OneOff(ctx, id)
		if err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return nil, errdefs.NotFound("oneoff_not_found", "one-off %q does not exist", id)
			}
			return nil, err
		}
		if subtle.ConstantTimeCompare(hash[:], rec.SecretHash) != 1 {
			return nil, wrongSecret(rec)
		}
		return nil, errdefs.Conflict("secret_used", "one-off %s already ran (%s): its secret is spent; start a new one-off", rec.Name, describe(rec))
	}
	rec, err := h.claim(hash, client)
	if err != nil {
		return nil, err
	}
	m.wg.Add(1)
	go m.audit(rec, AuditAttach, rec.Requester, "terminal from "+client+onNode(rec))
	return &Session{m: m, h: h}, nil
}

func wrongSecret(rec OneOff) error {
	return errdefs.Unauthorized("wrong_secret", "the attach secret is not one-off %s's: use the secret returned when it was created", rec.Name)
}

func (m *Manager) lookup(id string) *handle {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handles[id]
}

// forget stops following a one-off, finished or left to the next start.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.handles, id)
}

// discard removes a one-off's container that never started, and records
// how it ended.
func (m *Manager) discard(h *handle, outcome Outcome, msg string) {
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	h.stopTimer()
	if cid := h.containerID(); cid != "" {
		m.recordEnd(h, outcome, nil, msg)
		if err := m.rt.Remove(ctx, cid); err != nil {
			m.log.Error("remove container failed; reconcile will retry", "oneoff", h.id, "container", shortID(cid), "err", err)
		}
	}
	m.finish(h, outcome, nil, msg)
}

// finish records the end of a one-off and forgets it. Only the first call
// counts: a later one, from a path that lost a race, changes nothing.
func (m *Manager) finish(h *handle, outcome Outcome, code *int, msg string) {
	now := m.cfg.Now().UTC()
	rec, running, ok := h.end(outcome, code, msg, now)
	if !ok {
		return
	}
	m.met.finished.WithLabelValues(string(rec.Mode), string(outcome)).Inc()
	if running {
		m.met.runningOn(rec, -1)
	}
	if rec.StartedAt != nil {
		m.met.runDuration.WithLabelValues(string(rec.Mode)).Observe(now.Sub(*rec.StartedAt).Seconds())
	}
	m.audit(rec, AuditExit, ActorDaemon, describe(rec))
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Error("record finished one-off failed", "oneoff", rec.ID, "err", err)
	}
	m.forget(rec.ID)
	why := msg
	if why == "" {
		why = string(outcome)
	}
	h.markReady(errors.New(why))
	close(h.done)
	attrs := []any{"oneoff", rec.ID, "app", rec.App, "name", rec.Name, "outcome", outcome}
	if code != nil {
		attrs = append(attrs, "exit_code", *code)
	}
	if msg != "" {
		attrs = append(attrs, "error", msg)
	}
	m.log.Info("one-off finished", attrs...)
}

// recordEnd writes how a one-off ended before its container is removed, so
// that a daemon dying before the record says finished leaves the next start
// the outcome to record, rather than a guess.
func (m *Manager) recordEnd(h *handle, outcome Outcome, code *int, msg string) {
	rec, ok := h.recordEnd(outcome, code, msg)
	if !ok {
		return
	}
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Warn("record the end before removing the container failed", "oneoff", rec.ID, "err", err)
	}
}

func (m *Manager) engineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.cfg.EngineTimeout)
}
