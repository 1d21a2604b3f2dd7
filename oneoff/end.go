package oneoff

import (
	"context"
	"fmt"
)

// runEnd is what tells how a one-off's run ended.
type runEnd struct {
	// reason is why it was stopped, when someone or something asked;
	// stoppedBy names who, for a stop: "stopped by alice".
	reason    Outcome
	stoppedBy string
	// exit is how the container's command ended, as the runtime saw it.
	exit Exit
	// engineWasGone says the engine went away while it ran and came back.
	engineWasGone bool
	// size and memory are its size and the memory that size allows; node
	// is where it ran.
	size, memory, node string
}

// ending is how a one-off's run ended: the outcome and exit code it is
// recorded with, the message recorded in its record's Error, and the
// sentence its user is told.
type ending struct {
	outcome Outcome
	code    *int
	err     string
	told    string
}

// decideEnd decides how a run ended, the same way for an attached one-off,
// a detached one and one adopted after a restart. A wait that failed says
// the one-off was lost, whatever else happened; otherwise a stop's reason
// wins over how the command exited.
func decideEnd(in runEnd) ending {
	switch err := in.exit.Err; {
	case NodeLost(err):
		node := "the node that ran it"
		if in.node != "" {
			node = "the node " + in.node + " that ran it"
		}
		msg := node + " was lost"
		return ending{outcome: Lost, err: msg, told: msg + ": how it ended is unknown"}
	case EngineGone(err):
		return ending{outcome: Lost, err: "the Docker engine went away while it ran",
			told: "the Docker engine went away while the one-off ran: how it ended is unknown"}
	case err != nil:
		return ending{outcome: Lost, err: err.Error(), told: "lost track of the container: " + err.Error()}
	}
	code := in.exit.Code
	e := ending{outcome: Exited, code: &code}
	switch {
	case in.reason != "":
		e.outcome = in.reason
		if in.reason == Stopped {
			e.told = in.stoppedBy
		}
	case in.engineWasGone && code == engineLostCode:
		// Its end came with the engine's: the engine restarted without
		// its process, and says so with this code.
		e.outcome = Lost
		e.err = fmt.Sprintf("the Docker engine went away while it ran and took it along (exit code %d)", code)
		e.told = e.err
	case in.exit.OOMKilled:
		e.outcome = OutOfMemory
		e.err = fmt.Sprintf("killed: it ran out of memory (size %s allows %s)", in.size, in.memory)
		e.told = e.err + "; a larger --size may help"
	}
	return e
}

// decide decides how h's run ended, from the exit its container came to.
func (m *Manager) decide(h *handle, exit Exit, engineWasGone bool) ending {
	in := h.ending(exit, engineWasGone)
	in.memory = m.memoryOf(in.size)
	return decideEnd(in)
}

// result is what the user of an attached one-off is told of its end.
func (e ending) result() Result {
	return Result{Outcome: e.outcome, ExitCode: e.code, Message: e.told}
}

// endRun records an ended run's outcome, removes its container and
// finishes the one-off: the end is recorded before the removal, so that a
// daemon that dies in between leaves the next start the outcome to record.
func (m *Manager) endRun(ctx context.Context, h *handle, e ending) {
	m.recordEnd(h, e.outcome, e.code, e.err)
	rctx, cancel := m.engineContext(ctx)
	defer cancel()
	if err := m.rt.Remove(rctx, h.containerID()); err != nil {
		m.log.Error("remove container failed; reconcile will retry", "oneoff", h.id, "app", h.app, "err", err)
	}
	m.finish(h, e.outcome, e.code, e.err)
}
