package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// CreateRelease records r as its app's newest release, creating the app if
// needed. It numbers the release one past the app's previous one, starting
// at 1, and returns it with Version, CreatedAt and a non-nil Processes map.
// Releases older than the last ones KeepReleases keeps are deleted.
func (db *DB) CreateRelease(ctx context.Context, r deploy.Release) (deploy.Release, error) {
	r.CreatedAt = time.Now().UTC()
	if r.Processes == nil {
		r.Processes = map[string]string{}
	}
	env, err := marshal(r.Env)
	if err != nil {
		return deploy.Release{}, fmt.Errorf("create release for %q: %w", r.App, err)
	}
	procs, err := marshal(r.Processes)
	if err != nil {
		return deploy.Release{}, fmt.Errorf("create release for %q: %w", r.App, err)
	}
	at := formatTime(r.CreatedAt)
	err = db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO apps (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			r.App, at); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx,
			`SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?`,
			r.App).Scan(&r.Version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO releases (app, version, image, env, procfile, processes, created_at, cron)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.App, r.Version, r.Image, env, r.Procfile, procs, at, string(r.Cron))
		if err != nil {
			return err
		}
		return db.pruneReleases(ctx, tx, r.App, r.Version)
	})
	if err != nil {
		return deploy.Release{}, fmt.Errorf("create release for %q: %w", r.App, err)
	}
	return r, nil
}

// appQuery selects apps with their newest release, if any.
const appQuery = `
SELECT a.name, a.created_at,
	r.version, r.image, r.env, r.procfile, r.processes, r.created_at, r.cron
FROM apps a
LEFT JOIN releases r
	ON r.app = a.name
	AND r.version = (SELECT MAX(version) FROM releases WHERE app = a.name)`

// App returns an app with its current release, or an errdefs.ErrNotFound
// error.
func (db *DB) App(ctx context.Context, name string) (deploy.App, error) {
	a, err := scanApp(db.r.QueryRowContext(ctx, appQuery+` WHERE a.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return deploy.App{}, errdefs.NotFound("app_not_found",
			"app %q does not exist: deploy it first with \"oneoff --app %s deploy --image IMAGE\"", name, name)
	}
	if err != nil {
		return deploy.App{}, fmt.Errorf("read app %q: %w", name, err)
	}
	return a, nil
}

// Apps lists the apps by name, each with its current release.
func (db *DB) Apps(ctx context.Context) ([]deploy.App, error) {
	rows, err := db.r.QueryContext(ctx, appQuery+` ORDER BY a.name`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	apps := []deploy.App{}
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		apps = append(apps, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return apps, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanApp reads a row of appQuery.
func scanApp(s scanner) (deploy.App, error) {
	var (
		a                                  deploy.App
		appCreated                         string
		version                            sql.NullInt64
		image, env, procfile, procs, relAt sql.NullString
		cron                               sql.NullString
	)
	if err := s.Scan(&a.Name, &appCreated, &version, &image, &env, &procfile, &procs, &relAt, &cron); err != nil {
		return deploy.App{}, err
	}
	var err error
	if a.CreatedAt, err = parseTime(appCreated); err != nil {
		return deploy.App{}, err
	}
	if !version.Valid {
		return a, nil
	}
	r := deploy.Release{
		App:      a.Name,
		Version:  int(version.Int64),
		Image:    image.String,
		Procfile: procfile.String,
	}
	if err := json.Unmarshal([]byte(env.String), &r.Env); err != nil {
		return deploy.App{}, fmt.Errorf("decode env of release %d: %w", r.Version, err)
	}
	if err := json.Unmarshal([]byte(procs.String), &r.Processes); err != nil {
		return deploy.App{}, fmt.Errorf("decode processes of release %d: %w", r.Version, err)
	}
	if r.Processes == nil {
		r.Processes = map[string]string{}
	}
	if cron.String != "" {
		r.Cron = json.RawMessage(cron.String)
	}
	if r.CreatedAt, err = parseTime(relAt.String); err != nil {
		return deploy.App{}, err
	}
	a.Release = &r
	return a, nil
}
