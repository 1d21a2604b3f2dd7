package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// wantCLI runs the CLI and checks its exit code and that its stdout and
// stderr together hold each of wants.
func wantCLI(t *testing.T, d *daemon, code int, wants []string, args ...string) string {
	t.Helper()
	got, out, errOut := cliOut(t, d, args...)
	all := out + errOut
	if got != code {
		t.Errorf("oneoff %s: exit code %d, want %d; it said:\n%s", strings.Join(args, " "), got, code, all)
	}
	for _, w := range wants {
		if !strings.Contains(all, w) {
			t.Errorf("oneoff %s said:\n%s\nwant it to say %q", strings.Join(args, " "), all, w)
		}
	}
	return all
}

// TestCLI_Names checks that every command taking a one-off takes its name
// as well as its id, and that stop says what it waits for and ends the
// same way for a one-off that had already ended, however it ended.
func TestCLI_Names(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	job := d.startDetached(app, `echo started; trap "echo bye; exit 7" TERM; sleep 60 & wait`, "")

	wantCLI(t, d, 0, []string{"ID:", job.ID, "Name:", job.Name}, "--app", app, "inspect", job.Name)
	wantCLI(t, d, 0, []string{job.ID}, "inspect", job.Name) // unique across apps: no --app needed
	wantCLI(t, d, 1, []string{`app other has no one-off "` + job.Name + `"`}, "--app", "other", "inspect", job.Name)
	wantCLI(t, d, 0, []string{"Stopping " + job.Name + " on " + app + ": sending SIGTERM; SIGKILL in 10s",
		app + " " + job.Name + ": stopped (7)"}, "--app", app, "stop", job.Name)
	wantCLI(t, d, 0, []string{app + " " + job.Name + ": had already ended: stopped (7)"}, "--app", app, "stop", job.Name)
	out := wantCLI(t, d, 0, []string{"create", "stop", "exit"}, "--app", app, "audit", "--oneoff", job.Name)
	if strings.Count(out, job.Name) != 3 {
		t.Errorf("audit --oneoff %s:\n%s\nwant its three events", job.Name, out)
	}
	wantCLI(t, d, 0, []string{job.Name + " stdout: started", job.Name + " stdout: bye"}, "--app", app, "logs", "--filter", job.ID)

	exited := runDetached(t, d, app, "exit 3")
	wantCLI(t, d, 0, []string{app + " " + exited.Name + ": had already ended: exited (3)"}, "--app", app, "stop", exited.Name)
	d.waitNoContainers()
}

// TestCLI_Logs checks logs -n all, --tail, the daemon's bound on -n, and
// the lines of a detached one-off's start and end in the app's log.
func TestCLI_Logs(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	job := runDetached(t, d, app, "echo one; echo two; exit 3")

	out := wantCLI(t, d, 0, []string{
		job.Name + " stderr: Starting process with command `echo one; echo two; exit 3`",
		job.Name + " stdout: one",
		job.Name + " stderr: Process exited with status 3",
	}, "--app", app, "logs", "-n", "all")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
		t.Errorf("logs -n all: got %d lines, want the job's 2 and its start and end:\n%s", len(lines), out)
	}
	wantCLI(t, d, 0, []string{"stderr: Process exited with status 3"}, "--app", app, "logs", "-n", "1")
	// Following a one-off that has finished sends its lines and ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	err := d.client().OneOffLogs(ctx, job.ID, client.LogOptions{All: true, Follow: true}, func(apitypes.LogLine) error { n++; return nil })
	if err != nil || ctx.Err() != nil || n != 4 {
		t.Errorf("follow of a finished one-off: %d lines, %v, %v; want its 4 lines and the end", n, err, ctx.Err())
	}
	wantCLI(t, d, 1, []string{`must be "all" or a whole number from 0 to 10000`}, "--app", app, "logs", "-n", "100000")
	wantCLI(t, d, 1, []string{`--lines "many": give all or a whole number of lines`}, "--app", app, "logs", "-n", "many")

	// --tail follows, as -f does: the line of a job started after it
	// shows up.
	cmd := d.cli("--app", app, "logs", "--tail", "-n", "0")
	var buf testenv.Buffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	later := runDetached(t, d, app, "echo later")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), later.Name+" stdout: later") {
		if time.Now().After(deadline) {
			t.Fatalf("logs --tail showed:\n%s\nwant the line of %s, written after it started", buf.String(), later.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.waitNoContainers()
}

// TestCLI_Deploy checks that a deploy keeps what it is not given, says what
// the release has, and refuses an image that cannot be pulled.
func TestCLI_Deploy(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := "cli-deploy"
	procfile := filepath.Join(t.TempDir(), "Procfile")
	if err := os.WriteFile(procfile, []byte("worker: echo working\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := testenv.Image(t)
	wantCLI(t, d, 0, []string{"release 1 of " + img, "env: DB_URL, MODE", "process types: worker"},
		"--app", app, "deploy", "--image", img, "-e", "MODE=x", "-e", "DB_URL=postgres://db", "--procfile", procfile)
	wantCLI(t, d, 0, []string{"release 2 of " + img, "env: DB_URL, MODE (kept from release 1)", "process types: worker (kept from release 1)"},
		"--app", app, "deploy", "--image", img)
	wantCLI(t, d, 0, []string{"working"}, "--app", app, "run", "--no-tty", "--type", "worker")
	wantCLI(t, d, 0, []string{"env: MODE", "process types: (none)"}, "--app", app, "deploy", "--image", img, "-e", "MODE=y", "--procfile", "")
	wantCLI(t, d, 0, []string{"env: (none)", "process types: (none)"}, "--app", app, "deploy", "--image", img, "--reset")

	wantCLI(t, d, 1, []string{"the engine does not have image 127.0.0.1:1/nope:v1 and cannot pull it"},
		"--app", app, "deploy", "--image", "127.0.0.1:1/nope:v1")
	if a, err := d.client().App(context.Background(), app); err != nil || a.Release.Version != 4 || a.Release.Image != img {
		t.Errorf("after the refused deploy: %+v, %v; want release 4 of %s still current", a.Release, err, img)
	}
	// A detached one-off that cannot start, its image gone from the engine
	// since the deploy and its registry not answering: the CLI says so
	// and fails.
	cli := testenv.Docker(t)
	gone := "127.0.0.1:1/oneoffd-cli-gone:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := cli.ImageTag(context.Background(), img, gone); err != nil {
		t.Fatal(err)
	}
	wantCLI(t, d, 0, []string{"release 5 of " + gone}, "--app", app, "deploy", "--image", gone)
	if _, err := cli.ImageRemove(context.Background(), gone, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	wantCLI(t, d, 1, []string{"could not start: registry 127.0.0.1:1 does not answer"}, "--app", app, "run", "-d", "true")
	d.waitNoContainers()
}

// TestCLI_Messages checks the CLI's own words for what the user got wrong.
func TestCLI_Messages(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect"}, "inspect needs the one-off's id or name: oneoff [--app APP] inspect ID|NAME"},
		{[]string{"stop"}, "stop needs the one-off's id or name"},
		{[]string{"stop", "a", "b"}, "stop takes one argument, the one-off's id or name, not 2"},
		{[]string{"isnpect", "x"}, `there is no command "isnpect": did you mean "inspect"? oneoff --help lists the commands`},
		{[]string{"ps", "--bogus"}, "oneoff ps has no flag --bogus (oneoff ps --help lists them)"},
		{[]string{"ps", "-z"}, "oneoff ps has no flag -z"},
		{[]string{"--app"}, "--app needs a value, as in oneoff --app APP COMMAND"},
		{[]string{"--app", app, "run", "-d", "--ttl", "5", "true"}, `ttl "5" has no unit: write it with one, such as 5m or 5h`},
		{[]string{"ps", "--app", "nope"}, `app "nope" does not exist`},
		{[]string{"--app", "nope", "logs"}, `app "nope" does not exist`},
		{[]string{"run", "ls", "--app", app}, "flags go before the command: oneoff --app APP run CMD"},
		{[]string{"--app", app, "deploy"}, "deploy needs --image IMAGE"},
		{[]string{"ps", "extra"}, `ps takes no argument "extra"`},
	} {
		out := wantCLI(t, d, 1, []string{tt.want}, tt.args...)
		if strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("oneoff %s: got several lines, want one:\n%s", strings.Join(tt.args, " "), out)
		}
	}
}

// TestCLI_StopAttached stops an attached one-off from another terminal:
// the user's terminal gets a line of its own saying who stopped it, and
// the CLI exits non-zero saying so.
func TestCLI_StopAttached(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	c := d.cli("--app", app, "run", "sh")
	c.Env = append(c.Env, "ONEOFF_REQUESTER=alice@laptop")
	tm := startInPTY(t, c, 24, 80)
	name := tm.expect(`as (one-off-\d+)`)[1]
	tm.expect(`# `)
	stop := d.cli("--app", app, "stop", name)
	stop.Env = append(stop.Env, "ONEOFF_REQUESTER=bob@ops")
	if out, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	tm.expect(`\r\noneoffd: stopped by bob@ops: SIGTERM, then SIGKILL after 10s\r\n`)
	tm.expect(`oneoff: ` + regexp.QuoteMeta(name) + `: stopped by bob@ops`)
	if code := tm.wait(); code == 0 {
		t.Errorf("exit code 0 after being stopped, want non-zero")
	}
	d.waitNoContainers()
}

// TestDaemon_DataDirLocked starts a second daemon on a data dir in use:
// it refuses, naming the first one's pid.
func TestDaemon_DataDirLocked(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	cmd := exec.Command(filepath.Join(binDir, "oneoffd"), "--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0", "--data-dir", d.dataDir)
	cmd.Env = append(os.Environ(), "ONEOFFD_DATA_DIR=")
	out, err := cmd.CombinedOutput()
	if exitCode(t, err) == 0 {
		t.Fatalf("a second daemon on the same data dir started:\n%s", out)
	}
	if want := "is in use by another oneoffd (pid " + strconv.Itoa(d.cmd.Process.Pid) + ")"; !strings.Contains(string(out), want) {
		t.Errorf("the second daemon said:\n%s\nwant %q", out, want)
	}
	if _, err := d.client().Apps(context.Background()); err != nil {
		t.Errorf("the first daemon after the second's attempt: %v", err)
	}
}
