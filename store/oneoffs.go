package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// oneOffColumns are the columns of oneoffs, in the order scanOneOff reads
// them.
const oneOffColumns = `id, name, app, "release", image, command, env_names, mode, tty, requester,
	state, outcome, exit_code, error, container_id, client,
	created_at, started_at, finished_at, attach_deadline, secret_hash, expires_at, size, uploads,
	bytes_in, bytes_out, last_activity, step, node`

// CreateOneOff inserts a new record; a name already taken within the app is
// an errdefs.ErrConflict error.
func (db *DB) CreateOneOff(ctx context.Context, o oneoff.OneOff) error {
	cmd, err := marshal(o.Command)
	if err != nil {
		return fmt.Errorf("create one-off %q: %w", o.ID, err)
	}
	envNames, err := marshal(o.EnvNames)
	if err != nil {
		return fmt.Errorf("create one-off %q: %w", o.ID, err)
	}
	uploads, err := marshal(o.Uploads)
	if err != nil {
		return fmt.Errorf("create one-off %q: %w", o.ID, err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO oneoffs (`+oneOffColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			o.ID, o.Name, o.App, o.Release, o.Image, cmd, envNames, string(o.Mode), o.TTY, o.Requester,
			string(o.State), string(o.Outcome), exitCode(o.ExitCode), o.Error, o.ContainerID, o.Client,
			formatTime(o.CreatedAt), formatNullTime(o.StartedAt), formatNullTime(o.FinishedAt),
			formatNullTime(o.AttachDeadline), secretHash(o.SecretHash), formatNullTime(o.ExpiresAt), o.Size, uploads,
			o.BytesIn, o.BytesOut, formatNullTime(o.LastActivity), string(o.Step), o.Node)
		return err
	})
	if isUniqueViolation(err) {
		return errdefs.Conflict("name_taken",
			"a one-off named %q already exists in app %q: choose another name", o.Name, o.App)
	}
	if err != nil {
		return fmt.Errorf("create one-off %q: %w", o.ID, err)
	}
	return nil
}

// UpdateOneOff replaces the record with o's ID by o. Its identity, the ID,
// App, Name and CreatedAt, is fixed at creation and not changed. A record
// that does not exist is an errdefs.ErrNotFound error.
func (db *DB) UpdateOneOff(ctx context.Context, o oneoff.OneOff) error {
	cmd, err := marshal(o.Command)
	if err != nil {
		return fmt.Errorf("update one-off %q: %w", o.ID, err)
	}
	envNames, err := marshal(o.EnvNames)
	if err != nil {
		return fmt.Errorf("update one-off %q: %w", o.ID, err)
	}
	uploads, err := marshal(o.Uploads)
	if err != nil {
		return fmt.Errorf("update one-off %q: %w", o.ID, err)
	}
	var n int64
	err = db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE oneoffs SET
				"release" = ?, image = ?, command = ?, env_names = ?, mode = ?, tty = ?, requester = ?,
				state = ?, outcome = ?, exit_code = ?, error = ?, container_id = ?, client = ?,
				started_at = ?, finished_at = ?, attach_deadline = ?, secret_hash = ?, expires_at = ?, size = ?,
				uploads = ?, bytes_in = ?, bytes_out = ?, last_activity = ?, step = ?, node = ?
			WHERE id = ? AND (state != 'finished' OR ? = 'finished')`,
			o.Release, o.Image, cmd, envNames, string(o.Mode), o.TTY, o.Requester,
			string(o.State), string(o.Outcome), exitCode(o.ExitCode), o.Error, o.ContainerID, o.Client,
			formatNullTime(o.StartedAt), formatNullTime(o.FinishedAt), formatNullTime(o.AttachDeadline),
			secretHash(o.SecretHash), formatNullTime(o.ExpiresAt), o.Size, uploads,
			o.BytesIn, o.BytesOut, formatNullTime(o.LastActivity), string(o.Step), o.Node, o.ID, string(o.State))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		// Nothing updated: no such record, or a finished one that an
		// unfinished copy, written late by a path that lost a race with
		// the end, must not reopen.
		var state string
		switch err := tx.QueryRowContext(ctx, `SELECT state FROM oneoffs WHERE id = ?`, o.ID).Scan(&state); {
		case err == nil:
			n = 1
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update one-off %q: %w", o.ID, err)
	}
	if n == 0 {
		return errdefs.NotFound("oneoff_not_found", "one-off %q does not exist", o.ID)
	}
	return nil
}

// OneOff returns a record, or an errdefs.ErrNotFound error.
func (db *DB) OneOff(ctx context.Context, id string) (oneoff.OneOff, error) {
	o, err := scanOneOff(db.r.QueryRowContext(ctx,
		`SELECT `+oneOffColumns+` FROM oneoffs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return oneoff.OneOff{}, errdefs.NotFound("oneoff_not_found", "one-off %q does not exist", id)
	}
	if err != nil {
		return oneoff.OneOff{}, fmt.Errorf("read one-off %q: %w", id, err)
	}
	return o, nil
}

// OneOffs lists the records that pass f, newest first (ties broken by ID),
// at most f.Limit of them when it is positive.
func (db *DB) OneOffs(ctx context.Context, f oneoff.Filter) ([]oneoff.OneOff, error) {
	var (
		where []string
		args  []any
	)
	if f.App != "" {
		where = append(where, "app = ?")
		args = append(args, f.App)
	}
	if f.Name != "" {
		where = append(where, "name = ?")
		args = append(args, f.Name)
	}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Mode != "" {
		where = append(where, "mode = ?")
		args = append(args, string(f.Mode))
	}
	q := `SELECT ` + oneOffColumns + ` FROM oneoffs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}

	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list one-offs: %w", err)
	}
	defer rows.Close()
	list := []oneoff.OneOff{}
	for rows.Next() {
		o, err := scanOneOff(rows)
		if err != nil {
			return nil, fmt.Errorf("list one-offs: %w", err)
		}
		list = append(list, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list one-offs: %w", err)
	}
	return list, nil
}

// scanOneOff reads a row of oneOffColumns.
func scanOneOff(s scanner) (oneoff.OneOff, error) {
	var (
		o                                   oneoff.OneOff
		cmd, envNames, mode, state, outcome string
		created                             string
		started, finished, deadline         sql.NullString
		expires                             sql.NullString
		uploads                             string
		lastActivity                        sql.NullString
		code                                sql.NullInt64
		hash                                []byte
		step                                string
	)
	if err := s.Scan(&o.ID, &o.Name, &o.App, &o.Release, &o.Image, &cmd, &envNames, &mode, &o.TTY, &o.Requester,
		&state, &outcome, &code, &o.Error, &o.ContainerID, &o.Client,
		&created, &started, &finished, &deadline, &hash, &expires, &o.Size, &uploads,
		&o.BytesIn, &o.BytesOut, &lastActivity, &step, &o.Node); err != nil {
		return oneoff.OneOff{}, err
	}
	o.Mode, o.State, o.Outcome, o.Step = oneoff.Mode(mode), oneoff.State(state), oneoff.Outcome(outcome), oneoff.Step(step)
	if code.Valid {
		c := int(code.Int64)
		o.ExitCode = &c
	}
	if len(hash) > 0 {
		o.SecretHash = hash
	}
	if err := json.Unmarshal([]byte(cmd), &o.Command); err != nil {
		return oneoff.OneOff{}, fmt.Errorf("decode command of one-off %q: %w", o.ID, err)
	}
	if err := json.Unmarshal([]byte(uploads), &o.Uploads); err != nil {
		return oneoff.OneOff{}, fmt.Errorf("decode uploads of one-off %q: %w", o.ID, err)
	}
	if err := json.Unmarshal([]byte(envNames), &o.EnvNames); err != nil {
		return oneoff.OneOff{}, fmt.Errorf("decode env names of one-off %q: %w", o.ID, err)
	}
	var err error
	if o.CreatedAt, err = parseTime(created); err != nil {
		return oneoff.OneOff{}, err
	}
	if o.StartedAt, err = parseNullTime(started); err != nil {
		return oneoff.OneOff{}, err
	}
	if o.FinishedAt, err = parseNullTime(finished); err != nil {
		return oneoff.OneOff{}, err
	}
	if o.AttachDeadline, err = parseNullTime(deadline); err != nil {
		return oneoff.OneOff{}, err
	}
	if o.ExpiresAt, err = parseNullTime(expires); err != nil {
		return oneoff.OneOff{}, err
	}
	if o.LastActivity, err = parseNullTime(lastActivity); err != nil {
		return oneoff.OneOff{}, err
	}
	return o, nil
}

// exitCode encodes an optional exit status; nil becomes NULL.
func exitCode(c *int) any {
	if c == nil {
		return nil
	}
	return int64(*c)
}

// secretHash encodes an optional hash; nil or empty becomes NULL.
func secretHash(h []byte) any {
	if len(h) == 0 {
		return nil
	}
	return h
}
