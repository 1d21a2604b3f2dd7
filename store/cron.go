package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/oneoff"
)

var _ cron.Store = (*DB)(nil)

// cronRunsKept is how many history entries a cron job keeps; older ones
// are deleted as new ones come.
var cronRunsKept = cron.MaxHistory

// CronStates returns the state of every cron job that has one.
func (db *DB) CronStates(ctx context.Context) ([]cron.State, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT app, job, last_tick, last_oneoff, failures FROM cron_state ORDER BY app, job`)
	if err != nil {
		return nil, fmt.Errorf("read cron states: %w", err)
	}
	defer rows.Close()
	var out []cron.State
	for rows.Next() {
		var (
			st   cron.State
			tick sql.NullString
		)
		if err := rows.Scan(&st.App, &st.Job, &tick, &st.LastOneOff, &st.Failures); err != nil {
			return nil, fmt.Errorf("read cron states: %w", err)
		}
		t, err := parseNullTime(tick)
		if err != nil {
			return nil, fmt.Errorf("read cron states: %w", err)
		}
		if t != nil {
			st.LastTick = *t
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cron states: %w", err)
	}
	return out, nil
}

// AddCronRun records a run of a cron job and the job's state, together.
func (db *DB) AddCronRun(ctx context.Context, run cron.Run, st cron.State) (cron.Run, error) {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`INSERT INTO cron_runs (app, job, run_trigger, status, scheduled_at, acted_at, oneoff_id, oneoff_name, reason, outcome, exit_code, finished_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			run.App, run.Job, string(run.Trigger), string(run.Status), formatTime(run.ScheduledAt), formatTime(run.At),
			run.OneOffID, run.OneOffName, run.Reason, string(run.Outcome), exitCode(run.ExitCode), formatNullTime(run.FinishedAt))
		if err != nil {
			return err
		}
		if run.Seq, err = res.LastInsertId(); err != nil {
			return err
		}
		// A job keeps its latest cronRunsKept entries.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM cron_runs WHERE app = ? AND job = ? AND seq <= (
				SELECT seq FROM cron_runs WHERE app = ? AND job = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
			run.App, run.Job, run.App, run.Job, cronRunsKept); err != nil {
			return err
		}
		return saveCronState(ctx, tx, st)
	})
	if err != nil {
		return cron.Run{}, fmt.Errorf("record run of cron job %q of %q: %w", run.Job, run.App, err)
	}
	return run, nil
}

// FinishCronRun records how a started run ended, and the job's state.
func (db *DB) FinishCronRun(ctx context.Context, run cron.Run, st cron.State) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE cron_runs SET outcome = ?, exit_code = ?, finished_at = ? WHERE seq = ?`,
			string(run.Outcome), exitCode(run.ExitCode), formatNullTime(run.FinishedAt), run.Seq); err != nil {
			return err
		}
		return saveCronState(ctx, tx, st)
	})
	if err != nil {
		return fmt.Errorf("record end of run %d of cron job %q of %q: %w", run.Seq, run.Job, run.App, err)
	}
	return nil
}

func saveCronState(ctx context.Context, tx *sql.Tx, st cron.State) error {
	var tick any
	if !st.LastTick.IsZero() {
		tick = formatTime(st.LastTick)
	}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO cron_state (app, job, last_tick, last_oneoff, failures) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (app, job) DO UPDATE SET last_tick = excluded.last_tick,
			last_oneoff = excluded.last_oneoff, failures = excluded.failures`,
		st.App, st.Job, tick, st.LastOneOff, st.Failures)
	return err
}

// cronRunQuery selects runs with their one-off's state, which tells how a
// run ended before its end is recorded.
const cronRunQuery = `
SELECT r.seq, r.app, r.job, r.run_trigger, r.status, r.scheduled_at, r.acted_at, r.oneoff_id, r.oneoff_name, r.reason,
	r.outcome, r.exit_code, r.finished_at,
	COALESCE(o.state, ''), COALESCE(o.outcome, ''), o.exit_code, o.finished_at
FROM cron_runs r
LEFT JOIN oneoffs o ON o.id = r.oneoff_id AND r.oneoff_id <> ''`

// CronRuns returns a job's history, newest first, at most limit entries.
func (db *DB) CronRuns(ctx context.Context, app, job string, limit int) ([]cron.Run, error) {
	return db.cronRuns(ctx, cronRunQuery+` WHERE r.app = ? AND r.job = ? ORDER BY r.seq DESC LIMIT ?`, app, job, limit)
}

// UnfinishedCronRuns returns the started runs whose end is not recorded.
func (db *DB) UnfinishedCronRuns(ctx context.Context) ([]cron.Run, error) {
	return db.cronRuns(ctx, cronRunQuery+` WHERE r.status = ? AND r.finished_at IS NULL ORDER BY r.seq`, string(cron.Started))
}

func (db *DB) cronRuns(ctx context.Context, query string, args ...any) ([]cron.Run, error) {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read cron runs: %w", err)
	}
	defer rows.Close()
	out := []cron.Run{}
	for rows.Next() {
		r, err := scanCronRun(rows)
		if err != nil {
			return nil, fmt.Errorf("read cron runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cron runs: %w", err)
	}
	return out, nil
}

func scanCronRun(s scanner) (cron.Run, error) {
	var (
		r                               cron.Run
		trigger, status, sched, at, out string
		exit, oExit                     sql.NullInt64
		finished, oFinished             sql.NullString
		oState, oOutcome                string
	)
	if err := s.Scan(&r.Seq, &r.App, &r.Job, &trigger, &status, &sched, &at, &r.OneOffID, &r.OneOffName, &r.Reason,
		&out, &exit, &finished, &oState, &oOutcome, &oExit, &oFinished); err != nil {
		return cron.Run{}, err
	}
	r.Trigger, r.Status, r.Outcome = cron.Trigger(trigger), cron.Status(status), oneoff.Outcome(out)
	var err error
	if r.ScheduledAt, err = parseTime(sched); err != nil {
		return cron.Run{}, err
	}
	if r.At, err = parseTime(at); err != nil {
		return cron.Run{}, err
	}
	if !finished.Valid && oState != "" {
		// The end is not recorded yet: the one-off's record tells it.
		r.State, r.Outcome, exit, finished = oneoff.State(oState), oneoff.Outcome(oOutcome), oExit, oFinished
	} else if finished.Valid {
		r.State = oneoff.Finished
	}
	if exit.Valid {
		code := int(exit.Int64)
		r.ExitCode = &code
	}
	if r.FinishedAt, err = parseNullTime(finished); err != nil {
		return cron.Run{}, err
	}
	return r, nil
}
