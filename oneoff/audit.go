package oneoff

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The actions the audit trail records.
const (
	AuditCreate = "create"
	AuditAttach = "attach"
	AuditStop   = "stop"
	AuditReap   = "reap"
	AuditExit   = "exit"
)

// ActorDaemon is the actor of what oneoffd does by itself, such as a reap.
const ActorDaemon = "oneoffd"

// AuditEvent is one entry of the audit trail: who did what to which
// one-off, and when.
type AuditEvent struct {
	Time       time.Time `json:"time"`
	App        string    `json:"app"`
	OneOffID   string    `json:"oneoff_id"`
	OneOffName string    `json:"oneoff_name"`
	// Action is create, attach, stop, reap or exit.
	Action string `json:"action"`
	// Actor is who asked: the user the platform named, or ActorDaemon.
	Actor  string `json:"actor"`
	Detail string `json:"detail,omitempty"`
}

// AuditFilter narrows the audit trail. Zero fields match everything.
type AuditFilter struct {
	App      string
	OneOffID string
	// Limit caps the number of events, newest first; 0 means no cap.
	Limit int
}

// audit records an event, logging rather than failing when it cannot.
func (m *Manager) audit(rec OneOff, action, actor, detail string) {
	if actor == "" {
		actor = "unknown"
	}
	ev := AuditEvent{Time: m.cfg.Now().UTC(), App: rec.App, OneOffID: rec.ID, OneOffName: rec.Name,
		Action: action, Actor: actor, Detail: detail}
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	if err := m.store.AddAudit(ctx, ev); err != nil {
		m.log.Error("record audit event failed", "oneoff", rec.ID, "action", action, "err", err)
	}
}

// Audit returns the audit trail's events that pass f, newest first.
func (m *Manager) Audit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	return m.store.Audit(ctx, f)
}

// createDetail says what a one-off was asked to run, for the audit trail.
func createDetail(rec OneOff, files int) string {
	d := fmt.Sprintf("%s, size %s, release %d: %s", rec.Mode, rec.Size, rec.Release, strings.Join(rec.Command, " "))
	if files > 0 {
		d += fmt.Sprintf(" (%d files)", files)
	}
	return d
}
