package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AppDrains returns the URLs of an app's log drains, in the order added.
func (db *DB) AppDrains(ctx context.Context, app string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT url FROM app_drains WHERE app = ? ORDER BY created_at, url`, app)
	if err != nil {
		return nil, fmt.Errorf("list drains of %q: %w", app, err)
	}
	defer rows.Close()
	urls := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("list drains of %q: %w", app, err)
		}
		urls = append(urls, u)
	}
	return urls, rows.Err()
}

// AllAppDrains returns every app's drain URLs, by app.
func (db *DB) AllAppDrains(ctx context.Context) (map[string][]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT app, url FROM app_drains ORDER BY app, created_at, url`)
	if err != nil {
		return nil, fmt.Errorf("list drains: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var app, u string
		if err := rows.Scan(&app, &u); err != nil {
			return nil, fmt.Errorf("list drains: %w", err)
		}
		out[app] = append(out[app], u)
	}
	return out, rows.Err()
}

// SetAppDrains replaces an app's drain URLs.
func (db *DB) SetAppDrains(ctx context.Context, app string, urls []string) error {
	now := formatTime(time.Now().UTC())
	err := db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM app_drains WHERE app = ?`, app); err != nil {
			return err
		}
		for _, u := range urls {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO app_drains (app, url, created_at) VALUES (?, ?, ?)`, app, u, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set drains of %q: %w", app, err)
	}
	return nil
}
