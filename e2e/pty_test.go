package e2e

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// terminal is a command running in a real pseudo-terminal, as in a
// person's terminal window.
type terminal struct {
	t    testing.TB
	pty  *os.File
	cmd  *exec.Cmd
	done chan struct{}
	code int

	mu   sync.Mutex
	out  []byte
	seen int // what expect already matched
}

func startInPTY(t testing.TB, cmd *exec.Cmd, rows, cols uint16) *terminal {
	t.Helper()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("start in a pty: %v", err)
	}
	tm := &terminal{t: t, pty: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out = append(tm.out, buf[:n]...)
			tm.mu.Unlock()
			if err != nil {
				break
			}
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			tm.code = ee.ExitCode()
		default:
			tm.code = -1
		}
		close(tm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.done:
		default:
			_ = cmd.Process.Kill()
			<-tm.done
		}
		f.Close()
	})
	return tm
}

// expect waits until the output after the last match matches re.
func (tm *terminal) expect(re string) []string {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		tm.mu.Lock()
		rest := tm.out[tm.seen:]
		if loc := rx.FindSubmatchIndex(rest); loc != nil {
			var groups []string
			for i := 0; i+1 < len(loc); i += 2 {
				if loc[i] >= 0 {
					groups = append(groups, string(rest[loc[i]:loc[i+1]]))
				}
			}
			tm.seen += loc[1]
			tm.mu.Unlock()
			return groups
		}
		tm.mu.Unlock()
		select {
		case <-tm.done:
			tm.mu.Lock()
			rest = tm.out[tm.seen:]
			tm.mu.Unlock()
			if rx.Match(rest) {
				continue
			}
			tm.t.Fatalf("the command ended (exit %d) before printing %q; screen:\n%s", tm.code, re, tm.screen())
		default:
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %q on the screen after 20s; screen:\n%s", re, tm.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send types s.
func (tm *terminal) send(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.pty, s); err != nil {
		tm.t.Fatalf("type %q: %v", s, err)
	}
}

// resize changes the window's size; the kernel sends SIGWINCH.
func (tm *terminal) resize(rows, cols uint16) {
	tm.t.Helper()
	if err := pty.Setsize(tm.pty, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		tm.t.Fatal(err)
	}
}

// wait waits for the command to end and returns its exit code.
func (tm *terminal) wait() int {
	tm.t.Helper()
	select {
	case <-tm.done:
		return tm.code
	case <-time.After(30 * time.Second):
		tm.t.Fatalf("the command did not end within 30s; screen:\n%s", tm.screen())
		return -1
	}
}

func (tm *terminal) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return strings.ReplaceAll(string(tm.out), "\r", "")
}
