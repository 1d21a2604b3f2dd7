package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestDB_PruneOneOffs(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cutoff := now.Add(-90 * 24 * time.Hour)
	finished := func(id string, at time.Time) oneoff.OneOff {
		o := minimalOneOff(id, "web", at.Add(-time.Minute))
		o.State, o.Outcome, o.FinishedAt = oneoff.Finished, oneoff.Exited, &at
		return o
	}
	old := minimalOneOff("running-long", "web", cutoff.Add(-time.Hour))
	old.State = oneoff.Running
	for _, o := range []oneoff.OneOff{
		finished("old", cutoff.Add(-time.Second)),
		finished("at-cutoff", cutoff),
		finished("recent", now.Add(-time.Hour)),
		old,
		minimalOneOff("pending-long", "web", cutoff.Add(-time.Hour)),
	} {
		if err := db.CreateOneOff(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.PruneOneOffs(ctx, cutoff)
	if err != nil || n != 1 {
		t.Fatalf("PruneOneOffs = %d, %v; want 1 deleted", n, err)
	}
	if _, err := db.OneOff(ctx, "old"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the one-off finished before the cutoff: got %v, want it gone", err)
	}
	for _, id := range []string{"at-cutoff", "recent", "running-long", "pending-long"} {
		if _, err := db.OneOff(ctx, id); err != nil {
			t.Errorf("one-off %s: %v; want it kept", id, err)
		}
	}
	if n, err := db.PruneOneOffs(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("pruning again = %d, %v; want nothing more deleted", n, err)
	}
}

func TestDB_PruneOneOffs_batches(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const count = pruneBatch + 10
	err := db.write(ctx, func(tx *sql.Tx) error {
		for i := range count {
			o := minimalOneOff(fmt.Sprintf("o%05d", i), "web", at)
			if _, err := tx.ExecContext(ctx, `INSERT INTO oneoffs (id, name, app, "release", image, command, env_names, mode, tty,
				requester, state, outcome, error, container_id, client, created_at, finished_at)
				VALUES (?, ?, ?, 1, 'img', '[]', '[]', 'detached', 0, '', 'finished', 'exited', '', '', '', ?, ?)`,
				o.ID, o.Name, o.App, formatTime(at), formatTime(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneOneOffs(ctx, at.Add(time.Hour))
	if err != nil || n != count {
		t.Fatalf("PruneOneOffs = %d, %v; want all %d deleted", n, err, count)
	}
}

func TestDB_PruneAudit(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	cutoff := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{cutoff.Add(-48 * time.Hour), cutoff.Add(-time.Nanosecond), cutoff, cutoff.Add(time.Hour)} {
		ev := oneoff.AuditEvent{Time: at, App: "web", OneOffID: fmt.Sprint("o", i), Action: oneoff.AuditCreate, Actor: "alice"}
		if err := db.AddAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.PruneAudit(ctx, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("PruneAudit = %d, %v; want 2 deleted", n, err)
	}
	events, err := db.Audit(ctx, oneoff.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range events {
		got = append(got, ev.OneOffID)
	}
	if want := []string{"o3", "o2"}; !slices.Equal(got, want) {
		t.Errorf("events left %q, want %q", got, want)
	}
}

func TestDB_CreateRelease_keepsTheLastN(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		opts  []Option
		count int
		want  []int
	}{
		{"the default", nil, DefaultReleasesKept + 3, seq(4, DefaultReleasesKept+3)},
		{"three", []Option{KeepReleases(3)}, 5, []int{3, 4, 5}},
		{"one: the current one", []Option{KeepReleases(1)}, 4, []int{4}},
		{"fewer than kept", []Option{KeepReleases(3)}, 2, []int{1, 2}},
		{"all", []Option{KeepReleases(0)}, 4, []int{1, 2, 3, 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "oneoffd.db"), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			for range tt.count {
				for _, app := range []string{"web", "api"} {
					if _, err := db.CreateRelease(ctx, deploy.Release{App: app, Image: "img"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, app := range []string{"web", "api"} {
				if got := versions(t, db, app); !slices.Equal(got, tt.want) {
					t.Errorf("%s keeps releases %v, want %v", app, got, tt.want)
				}
				a, err := db.App(ctx, app)
				if err != nil || a.Release == nil || a.Release.Version != tt.count {
					t.Errorf("%s's current release: %+v, %v; want %d", app, a.Release, err, tt.count)
				}
			}
		})
	}
}

// versions returns the versions of app's releases, oldest first.
func versions(t *testing.T, db *DB, app string) []int {
	t.Helper()
	rows, err := db.r.Query(`SELECT version FROM releases WHERE app = ? ORDER BY version`, app)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
