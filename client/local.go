package client

import (
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the file in the data dir where a daemon keeps the API
// token it generated.
const TokenFileName = "api-token"

// DefaultDataDir is where a daemon keeps its state when not told otherwise:
// $ONEOFFD_DATA_DIR, else $XDG_DATA_HOME/oneoffd, else
// ~/.local/share/oneoffd.
func DefaultDataDir() string {
	if d := os.Getenv("ONEOFFD_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "oneoffd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "oneoffd")
	}
	return "oneoffd-data"
}

// LocalToken returns the token a daemon on this machine generated into the
// default data dir, and the file's path; the token is empty when there is
// none to read.
func LocalToken() (token, path string) {
	path = filepath.Join(DefaultDataDir(), TokenFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", path
	}
	return strings.TrimSpace(string(b)), path
}
