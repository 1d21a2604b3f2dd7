package oneoff

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// handle is the in-memory side of a one-off that has not finished: its
// record as it changes, who owns its terminal, why it is being stopped,
// and how it ended. Its state changes are its methods, each taking the
// lock itself; the channels and id and app are read without it.
type handle struct {
	// id and app are the record's, which never change.
	id, app string
	// stopc is closed at the first stop request, done once the one-off
	// has finished, ready once its container exists or never will.
	stopc, done, ready chan struct{}
	readyOnce          sync.Once
	// The attached terminal's traffic.
	bytesIn, bytesOut atomic.Int64

	mu      sync.Mutex
	rec     OneOff
	claimed bool
	// reason is why the one-off is being stopped, once someone asked;
	// stoppedBy is who asked, for a stop.
	reason    Outcome
	stoppedBy string
	timer     *time.Timer
	finished  bool
	prepErr   error        // why the container will never exist
	progress  PullProgress // how far its image's pull has got
	// running says the container started in this process, so that the
	// running gauge goes down again at the end.
	running bool
	act     *activity // the attached terminal's activity, once attached
}

func newHandle(rec OneOff) *handle {
	return &handle{id: rec.ID, app: rec.App, rec: rec,
		stopc: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{})}
}

// current returns the record with the terminal's traffic so far.
func (h *handle) current() OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.currentLocked()
}

func (h *handle) currentLocked() OneOff {
	rec := h.rec
	rec.BytesIn, rec.BytesOut = h.bytesIn.Load(), h.bytesOut.Load()
	if h.act != nil {
		last := h.act.lastTime().UTC()
		rec.LastActivity = &last
	}
	return rec
}

// containerID names the one-off's container; "" before it is created.
func (h *handle) containerID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rec.ContainerID
}

// snapshot returns a copy of the record.
func (h *handle) snapshot() OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rec
}

// update changes the record with f and returns the result, for the
// changes of the steps before the one-off runs.
func (h *handle) update(f func(rec *OneOff)) OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.rec)
	return h.rec
}

// place records where the container was created, and the next step's
// intent: the uploads, if any. It returns the record and the reason of a
// stop asked before, which found no container to remove.
func (h *handle) place(p Placement, uploads bool) (OneOff, Outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.ContainerID, h.rec.Node, h.rec.Step = p.ID, p.Node, StepNone
	if uploads {
		h.rec.Step = StepUpload
	}
	return h.rec, h.reason
}

// readyErr says why the container will never exist, once ready is closed.
func (h *handle) readyErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prepErr
}

// markReady says the container exists, or with err that it never will.
func (h *handle) markReady(err error) {
	h.readyOnce.Do(func() {
		h.mu.Lock()
		h.prepErr = err
		h.mu.Unlock()
		close(h.ready)
	})
}

// setProgress records how far the image's pull has got.
func (h *handle) setProgress(p PullProgress) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.progress = p
}

// pullProgress says how far the image's pull has got.
func (h *handle) pullProgress() PullProgress {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.progress
}

// claim hands the terminal to the holder of secret, once, and records the
// client it came from.
func (h *handle) claim(hash [sha256.Size]byte, client string) (OneOff, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if subtle.ConstantTimeCompare(hash[:], h.rec.SecretHash) != 1 {
		return h.rec, wrongSecret(h.rec)
	}
	if h.claimed || h.reason != "" {
		return h.rec, errdefs.Conflict("secret_used", "one-off %s already has a terminal or is ending: its secret is spent; start a new one-off", h.rec.Name)
	}
	h.claimed = true
	if h.timer != nil {
		h.timer.Stop()
	}
	h.rec.Client = client
	return h.rec, nil
}

// isClaimed says a terminal or a follower owns the one-off.
func (h *handle) isClaimed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.claimed
}

// markStarting records the start of a detached one-off about to be made,
// with the lifetime it will have; no terminal will claim it: its follower
// owns it. Of a one-off stopped before its start, it records nothing and
// says why it was stopped.
func (h *handle) markStarting(now, expires time.Time) (OneOff, Outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reason != "" {
		// Stopped before its start: the stop discarded it.
		return h.rec, h.reason
	}
	h.claimed = true
	h.rec.Step, h.rec.StartedAt, h.rec.ExpiresAt = StepStart, &now, &expires
	return h.rec, ""
}

// unmarkStarting takes back a start that was not made.
func (h *handle) unmarkStarting() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.Step, h.rec.StartedAt, h.rec.ExpiresAt = StepNone, nil, nil
}

// markRunning records the container's command as started (at now, unless
// a start was recorded before it was made) and counts it as running in
// this process.
func (h *handle) markRunning(now time.Time) OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.State, h.rec.Step, h.rec.AttachDeadline = Running, StepNone, nil
	if h.rec.StartedAt == nil {
		h.rec.StartedAt = &now
	}
	h.running = true
	return h.rec
}

// markAdopted records as running a detached one-off found started whose
// record still says pending, with the lifetime it had.
func (h *handle) markAdopted(now time.Time, lifetime time.Duration) OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.State, h.rec.Step = Running, StepNone
	if h.rec.StartedAt == nil {
		h.rec.StartedAt = &now
	}
	if h.rec.ExpiresAt == nil {
		at := h.rec.StartedAt.Add(lifetime)
		h.rec.ExpiresAt = &at
	}
	return h.rec
}

// adopt takes over a detached one-off an earlier daemon started: its
// follower owns it, and it counts as running in this process.
func (h *handle) adopt() OneOff {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claimed, h.running = true, true
	return h.rec
}

// attached records the terminal's activity, once the session runs.
func (h *handle) attached(act *activity) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.act = act
}

// armTimer calls f after d unless a stop was requested first.
func (h *handle) armTimer(d time.Duration, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reason != "" {
		return
	}
	h.timer = time.AfterFunc(d, f)
}

func (h *handle) stopTimer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
}

// requestStop records why the one-off must stop, the first reason winning,
// and reports whether this call was the first.
func (h *handle) requestStop(why Outcome) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requestStopLocked(why)
}

func (h *handle) requestStopLocked(why Outcome) bool {
	if h.reason != "" {
		return false
	}
	h.reason = why
	close(h.stopc)
	return true
}

// stopBy names who asks for a stop, unless a stop was requested before.
func (h *handle) stopBy(actor string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reason == "" {
		h.stoppedBy = actor
	}
}

// stopUnclaimed requests a stop unless a terminal claimed the one-off
// first; once it returns true, no terminal can claim it any more, so the
// caller alone discards it.
func (h *handle) stopUnclaimed(why Outcome) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.claimed {
		return false
	}
	return h.requestStopLocked(why)
}

// stopReason says why the one-off is being stopped; "" when nobody asked.
func (h *handle) stopReason() Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reason
}

// stopper says who stopped the one-off, once someone did: "stopped by
// alice@laptop with oneoff stop"; "" when nobody asked, or for another
// reason.
func (h *handle) stopper() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopperLocked()
}

func (h *handle) stopperLocked() string {
	if h.reason != Stopped || h.stoppedBy == "" {
		return ""
	}
	return "stopped by " + h.stoppedBy
}

// ending returns what decides how the run ended, once its container exited.
func (h *handle) ending(exit Exit, engineWasGone bool) runEnd {
	h.mu.Lock()
	defer h.mu.Unlock()
	return runEnd{reason: h.reason, stoppedBy: h.stopperLocked(), exit: exit, engineWasGone: engineWasGone,
		size: h.rec.Size, node: h.rec.Node}
}

// recordEnd records how the one-off ended, before its container is
// removed, and returns the record to write; false once it has finished.
func (h *handle) recordEnd(outcome Outcome, code *int, msg string) (OneOff, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.finished {
		return h.rec, false
	}
	h.rec.Step, h.rec.Outcome, h.rec.ExitCode, h.rec.Error = StepRemove, outcome, code, msg
	return h.rec, true
}

// end records the one-off finished at now and returns the final record
// and whether it counted as running; false when it had finished before:
// only the first end counts.
func (h *handle) end(outcome Outcome, code *int, msg string, now time.Time) (rec OneOff, running, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.finished {
		return h.rec, false, false
	}
	h.finished = true
	h.rec.State, h.rec.Step, h.rec.Outcome, h.rec.ExitCode, h.rec.Error = Finished, StepNone, outcome, code, msg
	h.rec.FinishedAt = &now
	h.rec.AttachDeadline = nil
	h.rec = h.currentLocked()
	return h.rec, h.running, true
}
