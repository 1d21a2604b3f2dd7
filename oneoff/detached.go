package oneoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// startDetached starts a detached one-off's container and hands it to a
// follower that feeds its output to the app's log until it ends.
func (m *Manager) startDetached(ctx context.Context, h *handle, ttl time.Duration) (OneOff, error) {
	// The start is recorded before it is made, with the lifetime it will
	// have: a daemon that dies before the record says running finds the
	// job running at its next start, and adopts it.
	now := m.cfg.Now().UTC()
	rec, stopped := h.markStarting(now, now.Add(ttl))
	if stopped != "" {
		return rec, errdefs.Conflict("oneoff_stopped", "one-off %s was stopped (%s) before it started", rec.Name, stopped)
	}
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		h.unmarkStarting()
		m.discard(h, Failed, userMessage(err))
		return rec, fmt.Errorf("record one-off %q: %w", rec.ID, err)
	}
	m.logLifecycle(rec, startingLine(rec))
	// Its end is watched for as long as the daemon runs.
	proc, err := m.rt.Start(ctx, rec.ContainerID, StartOptions{TTY: rec.TTY, Watch: m.ctx})
	if err != nil {
		h.unmarkStarting()
		m.logLifecycle(rec, "Process failed to start: "+userMessage(err))
		m.discard(h, Failed, userMessage(err))
		return rec, err
	}
	r := m.markRunning(ctx, h)
	m.bg.Add(1)
	go m.followDetached(r, proc.Exit, true)
	return r.rec, nil
}

// adoptDetached takes over a detached one-off that a previous run of the
// daemon started: its log resumes where the stored lines end, its lifetime
// still counts, and its exit is recorded.
func (m *Manager) adoptDetached(h *handle) {
	rec := h.adopt()
	m.met.runningOn(rec, 1)
	m.log.Info("adopting a detached one-off", "oneoff", h.id, "app", h.app, "name", rec.Name)
	m.bg.Add(1)
	go m.followDetached(m.newRun(m.ctx, h, rec), m.rt.Wait(m.ctx, rec.ContainerID), false)
}

// followDetached feeds a detached one-off's output to the app's log,
// stops it when asked or when its lifetime is over, and once it has exited
// and its output is drained, removes its container and records the end.
// When the daemon closes, it leaves the job running for the next start.
// A fresh job's log is read from its start: the lines already stored are
// the daemon's own (the pull, the start), in the daemon's time, which says
// nothing of where the container's log stands.
func (m *Manager) followDetached(r *run, exitc <-chan Exit, fresh bool) {
	defer m.bg.Done()
	ctx, h, rec, log := m.ctx, r.h, r.rec, r.log
	var (
		cursor LogCursor
		err    error
	)
	if !fresh {
		if cursor, err = m.logs.Resume(ctx, rec.App, rec.Name); err != nil {
			log.Error("find where the stored log ends; reading it all again", "err", err)
		}
	}
	f := &logFollower{m: m, rec: rec, log: log, cursor: cursor}

	var (
		stopFollowing context.CancelFunc
		followed      chan error
	)
	follow := func() {
		var followCtx context.Context
		followCtx, stopFollowing = context.WithCancel(ctx)
		followed = make(chan error, 1)
		go func() { followed <- f.read(followCtx, true) }()
	}
	follow()
	defer func() { stopFollowing() }()

	lifetime := lifetimeTimer(rec.ExpiresAt)
	defer lifetime.Stop()
	var (
		exit          Exit
		engineWasGone bool // the engine went away while it ran
	)
	for waiting, stopc := true, h.stopc; waiting; {
		select {
		case exit = <-exitc:
			if exit.Err != nil && ctx.Err() != nil {
				m.leave(h, followed) // the wait ended with the daemon, not the job
				return
			}
			if EngineGone(exit.Err) {
				// Whether the job runs on, exited or vanished, only the
				// engine can tell, once it is back.
				stopFollowing()
				<-followed
				present, ok := m.awaitEngine(ctx, rec, log, exit.Err)
				if !ok {
					m.leave(h, nil)
					return
				}
				engineWasGone = true
				if present {
					exitc = m.rt.Wait(ctx, rec.ContainerID)
					follow() // from the cursor on: no line twice
					if h.stopReason() != "" && stopc == nil {
						r.stopAgain() // asked before: the engine may have gone first
					}
					continue
				}
				exit = Exit{Code: -1, Err: errors.New("its container disappeared while the engine was away")}
				followed <- nil
			}
			waiting = false
		case <-stopc:
			stopc = nil
			log.Info("stopping")
			r.stop(Stopped) // the reason recorded first wins
		case <-lifetime.C:
			log.Info("lifetime over; stopping", "expires_at", rec.ExpiresAt)
			r.lifetimeOver("ran past its lifetime, until " + rec.ExpiresAt.Format(time.RFC3339))
		case <-ctx.Done():
			m.leave(h, followed)
			return
		}
	}

	if NodeLost(exit.Err) {
		// The node took the rest of its log along: what was followed is
		// all there is, and the one-off ends without waiting for more.
		stopFollowing()
		<-followed
		f.flushPartials(ctx)
	} else if !m.drainLog(ctx, f, followed, stopFollowing, log) {
		m.leave(h, nil)
		return
	}

	e := r.ending(exit, engineWasGone)
	m.logLifecycle(rec, m.endLine(h, e.outcome, e.code, e.err))
	r.end(e)
}

// drainLog reads the rest of an exited one-off's log once its follow,
// followed, has ended, or stopFollowing made it. The log's follow may end
// before the last lines are read (engines do that at exit); what it missed
// is read once more, without following. It reports false when the daemon
// closed first.
func (m *Manager) drainLog(ctx context.Context, f *logFollower, followed <-chan error, stopFollowing context.CancelFunc, log *slog.Logger) bool {
	var err error
	select {
	case err = <-followed:
	case <-time.After(m.cfg.DrainTimeout):
		stopFollowing()
		err = <-followed
	case <-ctx.Done():
		<-followed
		return false
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("following the log failed; reading it again", "err", err)
	}
	followedLines, endedAt := f.stored, time.Now()
	if err := f.catchUp(ctx); err != nil {
		if ctx.Err() != nil {
			return false
		}
		log.Error("read the end of the log failed", "err", err)
	}
	f.flushPartials(ctx)
	log.Debug("log read", "followed", followedLines, "caught_up", f.stored-followedLines, "catch_up_time", time.Since(endedAt))
	return true
}

// awaitEngine waits for the engine that went away to answer again, asking
// it less and less often, and reports whether it still has the one-off's
// container; ok is false when the daemon closes first.
func (m *Manager) awaitEngine(ctx context.Context, rec OneOff, log *slog.Logger, cause error) (present, ok bool) {
	log.Warn("the engine went away; waiting for it to answer again", "err", cause)
	delay := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return false, false
		case <-time.After(delay):
		}
		list, err := m.rt.List(ctx, map[string]string{LabelInstance: m.cfg.Instance, LabelID: rec.ID})
		switch {
		case err == nil:
			log.Info("the engine answers again", "container_found", len(list) > 0)
			return len(list) > 0, true
		case !EngineGone(err):
			log.Warn("list the one-off's container failed; retrying", "err", err)
		}
		delay = min(2*delay, maxEngineWait)
	}
}

// engineLostCode is the exit code a Docker engine gives, as it restarts, to
// a container whose process it lost while it was down.
const engineLostCode = 255

// maxEngineWait is the longest wait between two calls to an engine that
// went away.
const maxEngineWait = 5 * time.Second

// leave stops following a one-off that goes on running while the daemon is
// down; the next start adopts it.
func (m *Manager) leave(h *handle, followed <-chan error) {
	if followed != nil {
		<-followed
	}
	m.forget(h.id)
}
