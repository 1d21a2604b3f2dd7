package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFileName is the file in the data dir that a daemon holds locked for
// as long as it runs.
const LockFileName = "oneoffd.lock"

// dataDirLock is a daemon's hold on its data dir: two daemons on one data
// dir would reap each other's one-offs and interleave writes to the logs.
type dataDirLock struct{ f *os.File }

// lockDataDir takes the data dir's lock, or says which process holds it.
// The kernel releases the lock when the process ends, however it ends:
// a stale file left by a crash does not keep the next daemon out.
func lockDataDir(dir string) (*dataDirLock, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("another oneoffd (pid %d)", pid)
			}
			return nil, fmt.Errorf("data dir %s is in use by %s: stop it, or give this daemon its own --data-dir", dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("write lock file: %w", err)
		}
	}
	return &dataDirLock{f: f}, nil
}

// Close releases the lock.
func (l *dataDirLock) Close() error { return l.f.Close() }
