package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pruneBatch bounds the rows one transaction deletes, so that pruning a
// large backlog never holds the write lock for long.
const pruneBatch = 5000

// DefaultReleasesKept is how many releases of each app are kept unless
// KeepReleases says otherwise.
const DefaultReleasesKept = 20

// Option tunes a DB at Open.
type Option func(*DB)

// KeepReleases keeps the last n releases of each app, the current one
// among them: older ones are deleted as a new one is registered. An n
// below 1 keeps them all.
func KeepReleases(n int) Option {
	return func(db *DB) { db.keepReleases = n }
}

// PruneOneOffs deletes the records of the one-offs that finished before
// before, and returns how many it deleted. Unfinished one-offs are kept,
// however old.
func (db *DB) PruneOneOffs(ctx context.Context, before time.Time) (int, error) {
	n, err := db.pruneBatches(ctx,
		`DELETE FROM oneoffs WHERE rowid IN (
			SELECT rowid FROM oneoffs WHERE state = 'finished' AND finished_at < ? LIMIT ?)`,
		formatTime(before))
	if err != nil {
		return n, fmt.Errorf("prune one-offs finished before %s: %w", before.Format(time.RFC3339), err)
	}
	return n, nil
}

// PruneAudit deletes the audit trail's events older than before, and
// returns how many it deleted.
func (db *DB) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	n, err := db.pruneBatches(ctx,
		`DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE time < ? LIMIT ?)`,
		formatTime(before))
	if err != nil {
		return n, fmt.Errorf("prune audit events before %s: %w", before.Format(time.RFC3339), err)
	}
	return n, nil
}

// pruneBatches runs query, a DELETE taking a time and a batch size, one
// transaction per batch until a batch deletes less than a full one.
func (db *DB) pruneBatches(ctx context.Context, query, before string) (int, error) {
	total := 0
	for {
		var n int64
		err := db.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, query, before, pruneBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += int(n)
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
}

// pruneReleases deletes, in tx, app's releases older than the last
// db.keepReleases, version being its newest.
func (db *DB) pruneReleases(ctx context.Context, tx *sql.Tx, app string, version int) error {
	if db.keepReleases < 1 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM releases WHERE app = ? AND version <= ?`, app, version-db.keepReleases)
	return err
}
