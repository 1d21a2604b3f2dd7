package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/oneoffd/oneoffd/errdefs"
)

// openTest opens a fresh database in a temporary directory and closes it
// when the test ends.
func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "oneoffd.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestOpen(t *testing.T) {
	ctx := context.Background()

	t.Run("creates the parent directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "state", "oneoffd")
		db, err := Open(filepath.Join(dir, "oneoffd.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer db.Close()
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("stat parent directory: %v", err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
			t.Errorf("parent directory mode: got %v, want %v", got, want)
		}
	})

	t.Run("pragmas", func(t *testing.T) {
		db := openTest(t)
		tests := []struct {
			pragma string
			want   string
		}{
			{pragma: "journal_mode", want: "wal"},
			{pragma: "foreign_keys", want: "1"},
			{pragma: "busy_timeout", want: "5000"},
			{pragma: "synchronous", want: "1"}, // NORMAL
		}
		for _, tt := range tests {
			var got string
			if err := db.w.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s: got %q, want %q", tt.pragma, got, tt.want)
			}
		}
	})

	t.Run("schema version", func(t *testing.T) {
		db := openTest(t)
		var got int
		if err := db.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&got); err != nil {
			t.Fatalf("PRAGMA user_version: %v", err)
		}
		if want := len(migrations); got != want {
			t.Errorf("schema version: got %d, want %d", got, want)
		}
	})

	t.Run("readers cannot write", func(t *testing.T) {
		db := openTest(t)
		_, err := db.r.ExecContext(ctx, `INSERT INTO apps (name, created_at) VALUES ('x', 'y')`)
		if err == nil {
			t.Errorf("insert through a read-only connection: got no error, want one")
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
		db, err := Open(path)
		if err != nil {
			t.Fatalf("Open(%q): %v", path, err)
		}
		defer db.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("database file: %v", err)
		}
	})

	t.Run("newer schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "oneoffd.db")
		db, err := Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if _, err := db.w.ExecContext(ctx, "PRAGMA user_version = 999"); err != nil {
			t.Fatalf("set user_version: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		db, err = Open(path)
		if err == nil {
			db.Close()
			t.Fatalf("Open of a database from the future: got no error, want one")
		}
	})

	t.Run("empty path", func(t *testing.T) {
		if _, err := Open(""); err == nil {
			t.Errorf("Open(\"\"): got no error, want one")
		}
	})
}

func TestOpen_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "oneoffd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rel, err := db.CreateRelease(ctx, testRelease("web"))
	if err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	o := fullOneOff("o-1", "web")
	if err := db.CreateOneOff(ctx, o); err != nil {
		t.Fatalf("CreateOneOff: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatalf("re-Open: %v", err)
	}
	defer db.Close()
	app, err := db.App(ctx, "web")
	if err != nil {
		t.Fatalf("App after re-open: %v", err)
	}
	if app.Release == nil {
		t.Fatalf("App after re-open: got no release, want version %d", rel.Version)
	}
	assertRelease(t, *app.Release, rel)
	got, err := db.OneOff(ctx, o.ID)
	if err != nil {
		t.Fatalf("OneOff after re-open: %v", err)
	}
	assertOneOff(t, got, o)
	next, err := db.CreateRelease(ctx, testRelease("web"))
	if err != nil {
		t.Fatalf("CreateRelease after re-open: %v", err)
	}
	if got, want := next.Version, 2; got != want {
		t.Errorf("version after re-open: got %d, want %d", got, want)
	}
}

func TestDB_Ping(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	for i := range 3 {
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("Ping %d: %v", i, err)
		}
	}

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err := db.Ping(ctx)
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Ping: got %v, want ErrUnavailable", err)
		}
		// The failed ping leaves the database usable.
		if err := db.Ping(context.Background()); err != nil {
			t.Errorf("Ping after a cancelled one: %v", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		db, err := Open(filepath.Join(t.TempDir(), "oneoffd.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := db.Ping(ctx); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Ping on a closed database: got %v, want ErrUnavailable", err)
		}
	})
}

func TestDB_AppDrains(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	got, err := db.AppDrains(ctx, "web")
	if err != nil || len(got) != 0 {
		t.Fatalf("AppDrains before any = %v, %v; want none", got, err)
	}
	want := []string{"syslog+tls://logs.example.com:6514", "syslog://10.0.0.1:514"}
	if err := db.SetAppDrains(ctx, "web", want); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAppDrains(ctx, "api", want[:1]); err != nil {
		t.Fatal(err)
	}
	got, err = db.AppDrains(ctx, "web")
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("AppDrains = %v, %v; want %v", got, err, want)
	}
	all, err := db.AllAppDrains(ctx)
	if err != nil || len(all) != 2 || len(all["api"]) != 1 {
		t.Errorf("AllAppDrains = %v, %v", all, err)
	}
	if err := db.SetAppDrains(ctx, "web", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.AppDrains(ctx, "web"); len(got) != 0 {
		t.Errorf("AppDrains after clearing = %v, want none", got)
	}
}
