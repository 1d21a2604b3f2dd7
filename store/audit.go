package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/oneoffd/oneoffd/oneoff"
)

// AddAudit appends an event to the audit trail.
func (db *DB) AddAudit(ctx context.Context, ev oneoff.AuditEvent) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO audit (time, app, oneoff_id, oneoff_name, action, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			formatTime(ev.Time), ev.App, ev.OneOffID, ev.OneOffName, ev.Action, ev.Actor, ev.Detail)
		return err
	})
	if err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	return nil
}

// Audit lists the audit trail's events that pass f, newest first.
func (db *DB) Audit(ctx context.Context, f oneoff.AuditFilter) ([]oneoff.AuditEvent, error) {
	var (
		where []string
		args  []any
	)
	if f.App != "" {
		where = append(where, "app = ?")
		args = append(args, f.App)
	}
	if f.OneOffID != "" {
		where = append(where, "oneoff_id = ?")
		args = append(args, f.OneOffID)
	}
	q := `SELECT time, app, oneoff_id, oneoff_name, action, actor, detail FROM audit`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY seq DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit trail: %w", err)
	}
	defer rows.Close()
	events := []oneoff.AuditEvent{}
	for rows.Next() {
		var ev oneoff.AuditEvent
		var t string
		if err := rows.Scan(&t, &ev.App, &ev.OneOffID, &ev.OneOffName, &ev.Action, &ev.Actor, &ev.Detail); err != nil {
			return nil, fmt.Errorf("read audit trail: %w", err)
		}
		if ev.Time, err = parseTime(t); err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, rows.Err()
}
