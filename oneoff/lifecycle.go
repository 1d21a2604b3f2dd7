package oneoff

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The app's log tells when a detached one-off starts and how it ends, as
// Heroku's does, in lines of the one-off's own source on stderr. The start
// is written by the daemon that starts the container and the end by the
// one that sees it end, so that a job adopted after a restart gets each
// line once.

// logLifecycle appends a line about rec to its app's log, logging rather
// than failing when it cannot.
func (m *Manager) logLifecycle(rec OneOff, text string) {
	line := LogLine{Time: m.cfg.Now().UTC(), App: rec.App, Source: rec.Name, Stream: "stderr", Text: text}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.logs.Append(ctx, []LogLine{line}); err != nil {
		m.log.Warn("write the one-off's lifecycle to the app's log failed", "oneoff", rec.ID, "err", err)
	}
}

// logDetachedEnd writes the end line of a detached one-off that started,
// for the ends reconcile finds rather than a follower sees.
func (m *Manager) logDetachedEnd(rec OneOff, text string) {
	if rec.Mode == Detached && rec.StartedAt != nil {
		m.logLifecycle(rec, text)
	}
}

// startingLine is the line of a detached one-off about to start.
func startingLine(rec OneOff) string {
	cmd := strings.Join(rec.Command, " ")
	if len(rec.Command) == 3 && rec.Command[0] == "/bin/sh" && rec.Command[1] == "-c" {
		cmd = rec.Command[2] // a shell line, as the user wrote it
	}
	return fmt.Sprintf("Starting process with command `%s`", cmd)
}

// endLine is the line of a detached one-off that ended: how, with its exit
// status when it has one.
func (m *Manager) endLine(h *handle, outcome Outcome, code *int, msg string) string {
	status := ""
	if code != nil {
		status = fmt.Sprintf(", status %d", *code)
	}
	switch outcome {
	case Exited:
		return fmt.Sprintf("Process exited with status %d", *code)
	case Stopped:
		if by := h.stopper(); by != "" {
			return "Process " + by + status
		}
		return "Process stopped" + status
	case LifetimeExceeded:
		rec := h.snapshot()
		lifetime := ""
		if rec.ExpiresAt != nil && rec.StartedAt != nil {
			lifetime = " of " + rec.ExpiresAt.Sub(*rec.StartedAt).Round(time.Second).String()
		}
		return "Process stopped: it ran past its lifetime" + lifetime + status
	case OutOfMemory:
		size := h.snapshot().Size
		return fmt.Sprintf("Process killed: out of memory (size %s allows %s)%s", size, m.memoryOf(size), status)
	}
	if msg != "" {
		return fmt.Sprintf("Process %s: %s", strings.ReplaceAll(string(outcome), "_", " "), msg)
	}
	return "Process " + strings.ReplaceAll(string(outcome), "_", " ") + status
}
