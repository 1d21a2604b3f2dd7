package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// startDetached starts a detached one-off through the API.
func (d *daemon) startDetached(app, command, ttl string) apitypes.Created {
	d.t.Helper()
	o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
		Command: apitypes.Command{Line: command}, Detached: true, TTL: ttl})
	if err != nil {
		d.t.Fatalf("start detached %q: %v", command, err)
	}
	return o
}

// oneOffLines reads all of the lines a one-off's container wrote to its
// app's log: the daemon's lines of its start and end left out.
func (d *daemon) oneOffLines(id string) []apitypes.LogLine {
	d.t.Helper()
	var lines []apitypes.LogLine
	for _, l := range d.allOneOffLines(id) {
		if !isLifecycle(l) {
			lines = append(lines, l)
		}
	}
	return lines
}

// lifecycleLines returns the texts of the daemon's lines about a
// one-off's start and end in its app's log.
func (d *daemon) lifecycleLines(id string) []string {
	d.t.Helper()
	var out []string
	for _, l := range d.allOneOffLines(id) {
		if isLifecycle(l) {
			out = append(out, l.Text)
		}
	}
	return out
}

// allOneOffLines reads all of a one-off's lines from its app's log.
func (d *daemon) allOneOffLines(id string) []apitypes.LogLine {
	d.t.Helper()
	var lines []apitypes.LogLine
	err := d.client().OneOffLogs(context.Background(), id, client.LogOptions{All: true}, func(l apitypes.LogLine) error {
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		d.t.Fatalf("read logs of %s: %v", id, err)
	}
	return lines
}

// isLifecycle reports whether l is the daemon's line of a one-off's start
// or end.
func isLifecycle(l apitypes.LogLine) bool {
	return l.Stream == "stderr" && (strings.HasPrefix(l.Text, "Starting process with command `") || strings.HasPrefix(l.Text, "Process "))
}

func texts(lines []apitypes.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Stream + ":" + l.Text
	}
	return out
}

func TestDetached_Run(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(map[string]string{"WHO": "release"}, "")

	out, err := d.cli("--app", app, "run", "--detached", "-e", "WHO=request",
		`echo "hello $WHO"; echo oops >&2; printf 'no newline at the end'`).CombinedOutput()
	if err != nil {
		t.Fatalf("run --detached: %v: %s", err, out)
	}
	m := regexp.MustCompile(`Started (one-off-\d+) on \S+ \(id (\w+)\)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("run --detached said %q, want the one-off's name and id", out)
	}
	name, id := m[1], m[2]
	if want := "oneoff --app " + app + " logs -f --filter " + name; !strings.Contains(string(out), want) {
		t.Errorf("run --detached said %q, want the command to follow it: %q", out, want)
	}
	f := d.waitFinished(id)
	if f.Outcome != apitypes.Exited || f.ExitCode == nil || *f.ExitCode != 0 || f.Mode != apitypes.Detached {
		t.Errorf("finished %s/%v mode %s, want exited/0 detached", f.Outcome, f.ExitCode, f.Mode)
	}
	// stdout and stderr are separate pipes: their relative order is the
	// engine's; each stream's own order is kept.
	var stdout, stderr []string
	for _, l := range d.oneOffLines(id) {
		if l.Stream == "stdout" {
			stdout = append(stdout, l.Text)
		} else {
			stderr = append(stderr, l.Text)
		}
	}
	if got, want := strings.Join(stdout, "|"), "hello request|no newline at the end"; got != want {
		t.Errorf("stdout lines = %q, want %q", got, want)
	}
	if got, want := strings.Join(stderr, "|"), "oops"; got != want {
		t.Errorf("stderr lines = %q, want %q", got, want)
	}
	t.Run("logs command", func(t *testing.T) {
		out, err := d.cli("--app", app, "logs", "--filter", name).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{name + " stdout: hello request", name + " stderr: oops"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("logs output lacks %q:\n%s", w, out)
			}
		}
	})
	d.waitNoContainers()
}

func TestDetached_Tail(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	cmd := d.cli("--app", app, "run", "--detached", "--tail", "echo first; sleep 1; echo second; echo problem >&2; exit 4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if code := exitCode(t, err); code != 4 {
		t.Errorf("exit code = %d, want 4; stderr: %s", code, stderr.String())
	}
	if string(out) != "first\nsecond\n" {
		t.Errorf("stdout = %q, want %q", out, "first\nsecond\n")
	}
	if !strings.Contains(stderr.String(), "problem\n") || !strings.Contains(stderr.String(), "Started one-off-") {
		t.Errorf("stderr = %q, want the start notice and the job's stderr", stderr.String())
	}
	d.waitNoContainers()
}

func TestDetached_Lifetime(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--max-lifetime", "1h", "--stop-grace", "1s")
	app := d.deploy(nil, "")
	t.Run("a request may not ask for more than the maximum", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--detached", "--ttl", "2h", "true").CombinedOutput()
		if exitCode(t, err) != 1 || !strings.Contains(string(out), "over the maximum lifetime of 1h0m0s") {
			t.Errorf("got %v, %q; want a refusal naming the maximum", err, out)
		}
	})
	t.Run("a job past its lifetime is stopped", func(t *testing.T) {
		o := d.startDetached(app, "echo started; sleep 600", "2s")
		f := d.waitFinished(o.ID)
		if f.Outcome != apitypes.LifetimeExceeded {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.LifetimeExceeded)
		}
		if got := d.lifecycleLines(o.ID); len(got) != 2 || got[1] != "Process stopped: it ran past its lifetime of 2s, status 143" {
			t.Errorf("lifecycle lines %q, want the start and the lifetime's stop", got)
		}
		if got := texts(d.oneOffLines(o.ID)); len(got) != 1 || got[0] != "stdout:started" {
			t.Errorf("lines = %q, want the line printed before the stop", got)
		}
		out, _ := d.cli("inspect", o.ID).CombinedOutput()
		if !strings.Contains(string(out), "lifetime_exceeded") {
			t.Errorf("inspect does not say lifetime_exceeded:\n%s", out)
		}
	})
	t.Run("--tail says it was stopped", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--detached", "--tail", "--ttl", "1s", "sleep 600").CombinedOutput()
		if exitCode(t, err) == 0 || !strings.Contains(string(out), "ran past its lifetime") {
			t.Errorf("got %v, %q; want non-zero and a sentence about the lifetime", err, out)
		}
	})
	d.waitNoContainers()
}

// TestDetached_MillionLines checks that a job printing as fast as it can
// gets every line into the store, in order.
func TestDetached_MillionLines(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--log-retention", "256MiB") // room for them all
	app := d.deploy(nil, "")
	const n = 1000000
	o := d.startDetached(app, fmt.Sprintf("seq 1 %d; printf 'the end'", n), "")
	if f := d.waitFinishedWithin(o.ID, 3*time.Minute); f.Outcome != apitypes.Exited {
		t.Fatalf("outcome = %s", f.Outcome)
	}
	d.checkCounted(o.ID, n)
	d.waitNoContainers()
}

// TestDetached_DaemonKilled kills the daemon while detached jobs run: the
// jobs go on, and the restarted daemon adopts them with no gap and no
// duplicate in their logs, their lifetime still counting and their exit
// recorded.
func TestDetached_DaemonKilled(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--stop-grace", "1s")
	app := d.deploy(nil, "")
	counting := d.startDetached(app, `i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo "line $i"; sleep 0.01; done`, "")
	ending := d.startDetached(app, "echo before; sleep 2; echo after; exit 7", "")
	expiring := d.startDetached(app, "echo up; sleep 600", "4s")
	// Let them get going, and some lines into the store.
	deadline := time.Now().Add(20 * time.Second)
	for len(d.oneOffLines(counting.ID)) < 20 {
		if time.Now().After(deadline) {
			t.Fatal("the counting job's lines do not reach the store")
		}
		time.Sleep(50 * time.Millisecond)
	}

	d.kill()
	time.Sleep(2500 * time.Millisecond) // the jobs run on without the daemon; one ends
	if n := len(d.containers()); n != 3 {
		t.Fatalf("%d containers while the daemon is down, want the 3 jobs", n)
	}
	d.restart()

	t.Run("a running job's log resumes with no gap and no duplicate", func(t *testing.T) {
		f := d.waitFinished(counting.ID)
		if f.Outcome != apitypes.Exited || *f.ExitCode != 0 {
			t.Errorf("finished %s/%v, want exited/0", f.Outcome, f.ExitCode)
		}
		got := texts(d.oneOffLines(counting.ID))
		if len(got) != 400 {
			t.Errorf("%d lines, want 400", len(got))
		}
		for i, l := range got {
			if want := fmt.Sprintf("stdout:line %d", i+1); l != want {
				t.Fatalf("line %d = %q, want %q", i+1, l, want)
			}
		}
		// Started by the first daemon, ended under the second: each of the
		// daemon's lines once.
		want := []string{"Starting process with command `" + counting.Command[2] + "`", "Process exited with status 0"}
		if got := d.lifecycleLines(counting.ID); !slices.Equal(got, want) {
			t.Errorf("lifecycle lines %q, want %q", got, want)
		}
	})
	t.Run("a job that ended while the daemon was down is recorded", func(t *testing.T) {
		f := d.waitFinished(ending.ID)
		if f.Outcome != apitypes.Exited || f.ExitCode == nil || *f.ExitCode != 7 {
			t.Errorf("finished %s/%v, want exited/7", f.Outcome, f.ExitCode)
		}
		if got := texts(d.oneOffLines(ending.ID)); strings.Join(got, ",") != "stdout:before,stdout:after" {
			t.Errorf("lines = %q", got)
		}
	})
	t.Run("the lifetime still counts", func(t *testing.T) {
		f := d.waitFinished(expiring.ID)
		if f.Outcome != apitypes.LifetimeExceeded {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.LifetimeExceeded)
		}
		if got := texts(d.oneOffLines(expiring.ID)); len(got) != 1 {
			t.Errorf("lines = %q, want just \"up\"", got)
		}
	})
	d.waitNoContainers()
}

// TestDetached_LogsAsTheyCome reads a running job's log with curl, as a
// person would: each line shows while the job still runs.
func TestDetached_LogsAsTheyCome(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	// The job waits for a file that the test creates once it has seen the
	// first line: the second line cannot come before.
	o := d.startDetached(app, "echo first; while [ ! -e /tmp/go-on ]; do sleep 0.05; done; echo second", "")
	curl := exec.Command("curl", "-sSN", "-H", "Authorization: Bearer "+d.token,
		d.api+"/v1/apps/"+app+"/logs?follow=true&filter="+o.Name)
	out, err := curl.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	defer curl.Process.Kill()
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err == nil && strings.Contains(line, " stderr: Starting process with command `") {
		line, err = r.ReadString('\n') // the daemon's line of its start comes first
	}
	if err != nil || !strings.HasSuffix(line, o.Name+" stdout: first\n") {
		t.Fatalf("first line from curl = %q, %v", line, err)
	}
	if rec, _ := d.client().OneOff(context.Background(), o.ID); rec.State != apitypes.Running {
		t.Fatalf("the job is %s when its first line arrives, want running", rec.State)
	}
	cli := testenv.Docker(t)
	if err := cli.CopyToContainer(context.Background(), o.ContainerID, "/tmp", tarWith(t, "go-on"), container.CopyToContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	if line, err = r.ReadString('\n'); err != nil || !strings.HasSuffix(line, o.Name+" stdout: second\n") {
		t.Fatalf("second line from curl = %q, %v", line, err)
	}
	d.waitFinished(o.ID)
	d.waitNoContainers()
}

func TestDetached_TTY(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	tty := true
	o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
		Command: apitypes.Command{Line: "echo out; echo err >&2; tty -s && echo has-a-tty"}, Detached: true, TTY: &tty})
	if err != nil {
		t.Fatal(err)
	}
	d.waitFinished(o.ID)
	// With a TTY both streams are the terminal's: all is stdout, and the
	// terminal's carriage returns are gone.
	if got, want := strings.Join(texts(d.oneOffLines(o.ID)), "|"), "stdout:out|stdout:err|stdout:has-a-tty"; got != want {
		t.Errorf("lines = %q, want %q", got, want)
	}
	d.waitNoContainers()
}

// tarWith returns a tar archive holding one empty file.
func tarWith(t *testing.T, name string) io.Reader { return tarWithData(t, name, nil) }

// tarWithData returns a tar archive holding one file.
func tarWithData(t *testing.T, name string, data []byte) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// checkCounted checks that a one-off's stored output is the lines 1 to n,
// then "the end", each once and in order, as `seq 1 n; printf 'the end'`
// prints them.
func (d *daemon) checkCounted(id string, n int) {
	d.t.Helper()
	i := 0
	err := d.client().OneOffLogs(context.Background(), id, client.LogOptions{All: true}, func(l apitypes.LogLine) error {
		if isLifecycle(l) {
			return nil
		}
		i++
		want := fmt.Sprint(i)
		if i == n+1 {
			want = "the end"
		}
		if l.Text != want {
			return fmt.Errorf("line %d = %q, want %q", i, l.Text, want)
		}
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	if i != n+1 {
		d.t.Errorf("%d lines in the store, want %d", i, n+1)
	}
}
