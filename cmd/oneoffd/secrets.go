package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/oneoffd/oneoffd/client"
)

// minTokenLen is the shortest API token the daemon accepts: the generated
// ones are 64 hex digits, and a token is all that guards the API.
const minTokenLen = 32

// privateDataDir creates the data dir, readable by the daemon's user only
// (0700), and takes that mode back from a dir that existed with a wider one:
// it holds the database, with the apps' env values, and the API token. A
// dir the daemon may not chmod (a mount owned by another user) is only
// warned about: the files in it are the daemon user's alone anyway.
func privateDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := private(dir, 0o700, "data dir", log); err != nil {
		if _, statErr := os.Stat(dir); statErr != nil {
			return err
		}
		log.Warn("the data dir is open to other users and cannot be made private (the database and the token file in it are)", "err", err)
	}
	return nil
}

// private gives path the mode perm if its mode lets more in, with a warning
// saying so.
func private(path string, perm os.FileMode, what string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	got := fi.Mode().Perm()
	if got&^perm == 0 {
		return nil
	}
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("%s %s has mode %v, open to other users, and cannot be made %v: %w; "+
			"chmod it, or run the daemon as the user that owns it", what, path, got, perm, err)
	}
	log.Warn("made a "+what+" private: it was open to other users, who may have read it", "path", path, "was", got.String(), "now", perm.String())
	return nil
}

// loadToken returns the configured token, or the one generated into the
// data dir on first start, with that file's path. A token shorter than
// minTokenLen is refused; the file is made the daemon user's alone (0600)
// if it existed with a wider mode.
func loadToken(cfg config, log *slog.Logger) (token, file string, err error) {
	if cfg.Token != "" {
		if len(cfg.Token) < minTokenLen {
			return "", "", fmt.Errorf("--token (ONEOFFD_TOKEN) is %d characters: an API token must have at least %d; "+
				"generate one with: openssl rand -hex 32", len(cfg.Token), minTokenLen)
		}
		return cfg.Token, "", nil
	}
	file = filepath.Join(cfg.DataDir, client.TokenFileName)
	if token, err = readOrCreate(file, 32); err != nil {
		return "", "", err
	}
	if err := private(file, 0o600, "token file", log); err != nil {
		return "", "", err
	}
	if len(token) < minTokenLen {
		return "", "", fmt.Errorf("the token in %s is %d characters: an API token must have at least %d; "+
			"delete the file to have a new one generated", file, len(token), minTokenLen)
	}
	return token, file, nil
}

// readOrCreate returns the content of file, first writing n random bytes,
// hex-encoded, into it if it does not exist.
func readOrCreate(file string, n int) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.WriteFile(file, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	return s, nil
}
