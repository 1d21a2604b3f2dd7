package store

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
)

// TestOpen_modes checks that the database's files, which hold the apps'
// env values, are the daemon user's alone whatever the umask, and are made
// so when they existed with a wider mode.
func TestOpen_modes(t *testing.T) {
	old := syscall.Umask(0o022) // the usual one, which would give 0644
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	wantPrivate := func(t *testing.T, files ...string) {
		t.Helper()
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Errorf("stat %s: %v", filepath.Base(f), err)
				continue
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("%s: mode %v, want -rw-------", filepath.Base(f), got)
			}
		}
	}

	t.Run("a new database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "oneoffd.db")
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.CreateRelease(ctx, deploy.Release{App: "a", Image: "img", Env: map[string]string{"K": "secret"}}); err != nil {
			t.Fatal(err)
		}
		wantPrivate(t, path, path+"-wal", path+"-shm")
	})
	t.Run("files that were readable by others", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "oneoffd.db")
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateRelease(ctx, deploy.Release{App: "a", Image: "img"}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			fh, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE, 0o644) // kept if there
			if err != nil {
				t.Fatal(err)
			}
			fh.Close()
			if err := os.Chmod(f, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		db, err = Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		wantPrivate(t, path, path+"-wal", path+"-shm")
	})
}
