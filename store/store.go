// Package store keeps the daemon's state, the apps, their releases and the
// one-off records, in an embedded SQLite database.
//
// A DB implements both deploy.Store and oneoff.Store. Writes go through a
// single connection, so they never contend for SQLite's write lock inside
// the process; reads use a small pool of read-only connections that, in WAL
// mode, run alongside the writer.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

var (
	_ deploy.Store = (*DB)(nil)
	_ oneoff.Store = (*DB)(nil)
)

// readConns caps the read-only connections.
const readConns = 4

// DB is the daemon's database.
type DB struct {
	path string
	w    *sql.DB // the single writer connection
	r    *sql.DB // read-only connections
	// keepReleases is how many releases of each app are kept.
	keepReleases int
}

// Open opens the database at path, creating it and its parent directory
// if needed, and brings its schema up to date. The database holds the apps'
// env values: its file, and SQLite's -wal and -shm files next to it, are
// made readable by the daemon's user only (0600), also when they existed.
func Open(path string, opts ...Option) (*DB, error) {
	if path == "" {
		return nil, errors.New("open database: no path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// Created here first, so that SQLite finds it with the right mode and
	// gives its -wal and -shm files the same.
	if err := private(abs, true); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}

	w, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(context.Background(), w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(context.Background()); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	for _, side := range []string{abs + "-wal", abs + "-shm"} {
		if err := private(side, false); err != nil {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
	}
	db := &DB{path: path, w: w, r: r, keepReleases: DefaultReleasesKept}
	for _, o := range opts {
		o(db)
	}
	return db, nil
}

// private makes the file at path readable and writable by its owner only,
// creating it empty first if create is set; a missing file that is not to
// be created is no error.
func private(path string, create bool) error {
	if create {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) && !create {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o600 {
		return os.Chmod(path, 0o600)
	}
	return nil
}

// dsn returns the modernc.org/sqlite data source name for the file at the
// absolute path abs. Writer transactions begin IMMEDIATE, so that a
// read-then-write transaction never fails to upgrade its lock.
func dsn(abs string, readOnly bool) string {
	params := []string{"_pragma=busy_timeout(5000)"}
	if readOnly {
		params = append(params, "_pragma=query_only(1)")
	} else {
		params = append(params,
			"_pragma=journal_mode(WAL)",
			"_pragma=foreign_keys(1)",
			"_pragma=synchronous(NORMAL)",
			"_txlock=immediate",
		)
	}
	// In an SQLite URI, "%" escapes and "?" and "#" end the path.
	path := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(abs)
	return "file:" + path + "?" + strings.Join(params, "&")
}

// Close closes the database.
func (db *DB) Close() error {
	err := errors.Join(db.r.Close(), db.w.Close())
	if err != nil {
		return fmt.Errorf("close database %s: %w", db.path, err)
	}
	return nil
}

// Ping checks that the database answers and accepts writes, for the
// daemon's readiness check. It commits a heartbeat row, so a full disk or
// a read-only file system fails it too.
func (db *DB) Ping(ctx context.Context) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO health (id, pinged_at) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET pinged_at = excluded.pinged_at`,
			formatTime(time.Now()))
		return err
	})
	if err == nil {
		err = db.r.PingContext(ctx)
	}
	if err != nil {
		return errdefs.Unavailable("database_unavailable", err, "database %s does not answer or accept writes", db.path)
	}
	return nil
}

// write runs fn in a write transaction and commits it if fn succeeds.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// migrations are the schema changes, in order: applying migrations[i]
// takes the schema, recorded in PRAGMA user_version, from version i to i+1.
// Never edit one that has shipped; append a new one.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE apps (
	name       TEXT NOT NULL PRIMARY KEY,
	created_at TEXT NOT NULL
) STRICT;

CREATE TABLE releases (
	app        TEXT    NOT NULL REFERENCES apps (name),
	version    INTEGER NOT NULL,
	image      TEXT    NOT NULL,
	env        TEXT    NOT NULL, -- JSON object
	procfile   TEXT    NOT NULL,
	processes  TEXT    NOT NULL, -- JSON object
	created_at TEXT    NOT NULL,
	PRIMARY KEY (app, version)
) STRICT;

CREATE TABLE oneoffs (
	id              TEXT    NOT NULL PRIMARY KEY,
	name            TEXT    NOT NULL,
	app             TEXT    NOT NULL,
	"release"       INTEGER NOT NULL,
	image           TEXT    NOT NULL,
	command         TEXT    NOT NULL, -- JSON array
	env_names       TEXT    NOT NULL, -- JSON array
	mode            TEXT    NOT NULL,
	tty             INTEGER NOT NULL,
	requester       TEXT    NOT NULL,
	state           TEXT    NOT NULL,
	outcome         TEXT    NOT NULL,
	exit_code       INTEGER,
	error           TEXT    NOT NULL,
	container_id    TEXT    NOT NULL,
	client          TEXT    NOT NULL,
	created_at      TEXT    NOT NULL,
	started_at      TEXT,
	finished_at     TEXT,
	attach_deadline TEXT,
	secret_hash     BLOB,
	UNIQUE (app, name)
) STRICT;

CREATE INDEX oneoffs_by_app ON oneoffs (app, state, created_at);
CREATE INDEX oneoffs_by_state ON oneoffs (state, created_at);

-- One row, rewritten by Ping to prove the database accepts writes.
CREATE TABLE health (
	id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	pinged_at TEXT    NOT NULL
) STRICT;
`,
	// 2: detached one-offs' lifetime, and apps' log drains.
	`
ALTER TABLE oneoffs ADD COLUMN expires_at TEXT;

CREATE TABLE app_drains (
	app        TEXT NOT NULL,
	url        TEXT NOT NULL,
	created_at TEXT NOT NULL,
	PRIMARY KEY (app, url)
) STRICT;
`,
	// 3: the size a one-off runs with.
	`ALTER TABLE oneoffs ADD COLUMN size TEXT NOT NULL DEFAULT '';`,
	// 4: the files uploaded for a one-off.
	`ALTER TABLE oneoffs ADD COLUMN uploads TEXT NOT NULL DEFAULT 'null'; -- JSON array`,
	// 5: the traffic of attached sessions, and the audit trail.
	`
ALTER TABLE oneoffs ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE oneoffs ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE oneoffs ADD COLUMN last_activity TEXT;

CREATE TABLE audit (
	seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	time        TEXT    NOT NULL,
	app         TEXT    NOT NULL,
	oneoff_id   TEXT    NOT NULL,
	oneoff_name TEXT    NOT NULL,
	action      TEXT    NOT NULL,
	actor       TEXT    NOT NULL,
	detail      TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_by_app ON audit (app, seq);
CREATE INDEX audit_by_oneoff ON audit (oneoff_id, seq);
`,
	// 6: the engine call under way for a one-off, and indexes for pruning
	// records by age.
	`
ALTER TABLE oneoffs ADD COLUMN step TEXT NOT NULL DEFAULT '';

CREATE INDEX oneoffs_by_finish ON oneoffs (state, finished_at);
CREATE INDEX audit_by_time ON audit (time);
`,
	// 7: a release's scheduled jobs, each job's state and its history.
	`
ALTER TABLE releases ADD COLUMN cron TEXT NOT NULL DEFAULT ''; -- JSON object, or empty

CREATE TABLE cron_state (
	app         TEXT    NOT NULL,
	job         TEXT    NOT NULL,
	last_tick   TEXT,
	last_oneoff TEXT    NOT NULL,
	failures    INTEGER NOT NULL,
	PRIMARY KEY (app, job)
) STRICT;

CREATE TABLE cron_runs (
	seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	app          TEXT    NOT NULL,
	job          TEXT    NOT NULL,
	run_trigger  TEXT    NOT NULL,
	status       TEXT    NOT NULL,
	scheduled_at TEXT    NOT NULL,
	acted_at     TEXT    NOT NULL,
	oneoff_id    TEXT    NOT NULL,
	oneoff_name  TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	outcome      TEXT    NOT NULL,
	exit_code    INTEGER,
	finished_at  TEXT
) STRICT;

CREATE INDEX cron_runs_by_job ON cron_runs (app, job, seq);
CREATE INDEX cron_runs_unfinished ON cron_runs (status, finished_at);
`,
	// 8: the node a one-off runs on, on a cluster.
	`ALTER TABLE oneoffs ADD COLUMN node TEXT NOT NULL DEFAULT '';`,
}

// migrate applies the migrations the database lacks, each in its own
// transaction.
func migrate(ctx context.Context, w *sql.DB) error {
	for {
		applied, err := migrateNext(ctx, w)
		if err != nil {
			return err
		}
		if !applied {
			return nil
		}
	}
}

// migrateNext applies the first missing migration, if any, and reports
// whether it did. The version is read inside the write transaction, so two
// processes opening the same file cannot both apply a migration.
func migrateNext(ctx context.Context, w *sql.DB) (bool, error) {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate schema: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return false, nil
	case version > len(migrations) || version < 0:
		return false, fmt.Errorf("schema version %d is newer than this oneoffd knows (%d): upgrade oneoffd", version, len(migrations))
	}
	if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
		return false, fmt.Errorf("migrate schema to version %d: %w", version+1, err)
	}
	// PRAGMA takes no parameters; version is an int we computed.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
		return false, fmt.Errorf("migrate schema to version %d: %w", version+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate schema to version %d: %w", version+1, err)
	}
	return true, nil
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so that stored
// UTC times sort as text in time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// formatTime encodes t for the database, in UTC.
func formatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

// parseTime decodes a time encoded by formatTime.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// formatNullTime encodes an optional time; nil becomes NULL.
func formatNullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

// parseNullTime decodes an optional time; NULL becomes nil.
func parseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// marshal encodes v as JSON text for a column.
func marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
