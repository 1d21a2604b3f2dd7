package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/oneoffd/oneoffd/client"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoadToken(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })

	t.Run("a configured token shorter than 32 characters is refused", func(t *testing.T) {
		_, _, err := loadToken(config{Token: "secret", DataDir: t.TempDir()}, discard())
		if err == nil || !strings.Contains(err.Error(), "--token (ONEOFFD_TOKEN) is 6 characters: an API token must have at least 32") {
			t.Errorf("got %v, want the token refused with its length and the minimum", err)
		}
	})
	t.Run("a configured token of 32 characters is taken", func(t *testing.T) {
		tok := strings.Repeat("k", 32)
		got, file, err := loadToken(config{Token: tok, DataDir: t.TempDir()}, discard())
		if err != nil || got != tok || file != "" {
			t.Errorf("got %q, %q, %v; want the token, no file", got, file, err)
		}
	})
	t.Run("a generated token file is 0600", func(t *testing.T) {
		dir := t.TempDir()
		tok, file, err := loadToken(config{DataDir: dir}, discard())
		if err != nil || len(tok) != 64 || file != filepath.Join(dir, client.TokenFileName) {
			t.Fatalf("got %q, %q, %v; want 64 hex digits in the data dir", tok, file, err)
		}
		if got := mode(t, file); got != 0o600 {
			t.Errorf("mode %v, want -rw-------", got)
		}
	})
	t.Run("a token file that existed open to others is made 0600", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, client.TokenFileName)
		tok := strings.Repeat("ab", 32)
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _, err := loadToken(config{DataDir: dir}, discard())
		if err != nil || got != tok {
			t.Fatalf("got %q, %v; want the file's token", got, err)
		}
		if got := mode(t, file); got != 0o600 {
			t.Errorf("mode %v, want -rw-------", got)
		}
	})
	t.Run("a short token in the file is refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, client.TokenFileName), []byte("short\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := loadToken(config{DataDir: dir}, discard())
		if err == nil || !strings.Contains(err.Error(), "is 5 characters") {
			t.Errorf("got %v, want the file's token refused", err)
		}
	})
}

func TestPrivateDataDir(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	t.Run("created 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "data")
		if err := privateDataDir(dir, discard()); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, dir); got != 0o700 {
			t.Errorf("mode %v, want drwx------", got)
		}
	})
	t.Run("an existing dir open to others made 0700", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := privateDataDir(dir, discard()); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, dir); got != 0o700 {
			t.Errorf("mode %v, want drwx------", got)
		}
	})
}
