package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// wantDrained returns how rsyslogd should write l, a line of the daemon's
// log: RFC 5424 fields from the line, user facility, stdout at info and
// stderr at err, a microsecond timestamp.
func wantDrained(hostname string, l apitypes.LogLine) testenv.SyslogRecord {
	severity := "info"
	if l.Stream == "stderr" {
		severity = "err"
	}
	return testenv.SyslogRecord{
		Hostname: hostname, Facility: "user",
		App: l.App, ProcID: l.Source, MsgID: l.Stream, Severity: severity,
		Time: l.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano), StructuredData: "-", Msg: l.Text,
	}
}

// checkDrained checks that the one-off o's log holds want ("stream:text",
// stdout lines in order) and that each of those lines reached r, every
// field right, stdout lines in order. It returns what r has received.
func checkDrained(t *testing.T, d *daemon, r *testenv.Rsyslog, o apitypes.Created, want []string) []testenv.SyslogRecord {
	t.Helper()
	lines := d.oneOffLines(o.ID)
	if got := texts(lines); !sameLines(got, want) {
		t.Fatalf("one-off %s's log holds %q, want %q", o.Name, got, want)
	}
	msgs := make([]string, len(lines))
	for i, l := range lines {
		msgs[i] = l.Text
	}
	recs := r.WaitMsgs(msgs)
	hostname, _ := os.Hostname() // the daemon's default
	firstAt := func(msg string) int {
		return slices.IndexFunc(recs, func(rec testenv.SyslogRecord) bool { return rec.Msg == msg })
	}
	lastStdout := -1
	for _, l := range lines {
		i := firstAt(l.Text)
		got, want := recs[i], wantDrained(hostname, l)
		// rsyslogd may write the offset its own way: compare instants.
		if gotTime, err := time.Parse(time.RFC3339Nano, got.Time); err == nil && gotTime.Equal(l.Time.Truncate(time.Microsecond)) {
			got.Time = want.Time
		}
		if got != want {
			t.Errorf("line %q arrived as\n got %+v\nwant %+v", l.Text, got, want)
		}
		if l.Stream == "stdout" {
			if i < lastStdout {
				t.Errorf("stdout line %q arrived before the line printed ahead of it", l.Text)
			}
			lastStdout = i
		}
	}
	return recs
}

// sameLines reports whether got holds want's lines: the stdout ones in the
// same order, the stderr ones in the same order, whatever the interleaving
// of the two pipes.
func sameLines(got, want []string) bool {
	stream := func(lines []string, prefix string) []string {
		var out []string
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return out
	}
	return len(got) == len(want) &&
		slices.Equal(stream(got, "stdout:"), stream(want, "stdout:")) &&
		slices.Equal(stream(got, "stderr:"), stream(want, "stderr:"))
}

// runDetached runs a detached one-off of app to its end and returns it.
func runDetached(t *testing.T, d *daemon, app, command string) apitypes.Created {
	t.Helper()
	o := d.startDetached(app, command, "")
	if f := d.waitFinished(o.ID); f.Outcome != apitypes.Exited {
		t.Fatalf("one-off %q: outcome %s (%s), want exited", command, f.Outcome, f.Error)
	}
	return o
}

// startDrainDaemon starts a daemon with extra flags, and shows its log if
// the test fails after it exited, which the harness would not. Its drains
// may reach the loopback interface, where the tests' syslog servers listen
// and which drains may not reach by default.
func startDrainDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	d := startDaemon(t, append([]string{"--drain-allow", "127.0.0.0/8"}, extra...)...)
	t.Cleanup(func() {
		select {
		case <-d.exited:
			if t.Failed() {
				t.Logf("oneoffd exited before the end of the test; its log:\n%s", d.logs.String())
			}
		default:
		}
	})
	return d
}

// drainsShown reduces the table "oneoff drains" prints to its drains' URLs,
// one a line; other output is returned as it is.
func drainsShown(out string) string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "DRAIN ") {
		return out
	}
	var urls strings.Builder
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			urls.WriteString(f[0] + "\n")
		}
	}
	return urls.String()
}

// cliOut runs the CLI and returns its exit code, stdout and stderr.
func cliOut(t *testing.T, d *daemon, args ...string) (int, string, string) {
	t.Helper()
	cmd := d.cli(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	return exitCode(t, err), string(out), stderr.String()
}

func TestDrains_Global(t *testing.T) {
	t.Parallel()
	r := testenv.StartRsyslog(t, false)
	d := startDrainDaemon(t, "--log-drains", r.URL())
	app := d.deploy(nil, "")

	o := runDetached(t, d, app, `echo "global 1"; echo "global 2 | with a bar"; echo "global oops" >&2; echo "global 3"`)
	checkDrained(t, d, r, o, []string{"stdout:global 1", "stdout:global 2 | with a bar", "stderr:global oops", "stdout:global 3"})
	d.waitNoContainers()
}

func TestDrains_PerAppTLS(t *testing.T) {
	t.Parallel()
	r := testenv.StartRsyslog(t, true)
	d := startDrainDaemon(t, "--drain-ca", r.CAFile())
	appA := d.deploy(nil, "")
	appB := appA + "-b"
	if _, err := d.client().Deploy(context.Background(), appB, apitypes.Deploy{Image: testenv.Image(t)}); err != nil {
		t.Fatalf("deploy %s: %v", appB, err)
	}
	// listDrains runs "oneoff --app app drains" and returns its output.
	listDrains := func(app string) string {
		t.Helper()
		code, out, stderr := cliOut(t, d, "--app", app, "drains")
		if code != 0 {
			t.Fatalf("drains for %s: exit %d: %s", app, code, stderr)
		}
		return drainsShown(out)
	}
	withDrain := r.URL() + "\n"
	noDrainA, noDrainB := appA+" has no log drains\n", appB+" has no log drains\n"

	// Added through the CLI, which lists the app's drains after.
	code, out, stderr := cliOut(t, d, "--app", appA, "drains", "add", r.URL())
	if out = drainsShown(out); code != 0 || out != withDrain {
		t.Fatalf("drains add: exit %d, output %q (stderr %q); want 0 and %q", code, out, stderr, withDrain)
	}
	if got := listDrains(appA); got != withDrain {
		t.Errorf("drains of %s = %q, want %q", appA, got, withDrain)
	}
	if got := listDrains(appB); got != noDrainB {
		t.Errorf("drains of %s = %q, want %q", appB, got, noDrainB)
	}

	// B's one-off ends and its lines are in the log, hence handed to the
	// drains, before A's starts: had they gone to A's drain, they would
	// arrive before A's lines.
	b := runDetached(t, d, appB, `echo "b 1"; echo "b oops" >&2`)
	if got := texts(d.oneOffLines(b.ID)); len(got) != 2 {
		t.Fatalf("%s's one-off logged %q, want 2 lines", appB, got)
	}
	a := runDetached(t, d, appA, `echo "a 1"; echo "a oops" >&2; echo "a 2"`)
	checkDrained(t, d, r, a, []string{"stdout:a 1", "stderr:a oops", "stdout:a 2"})

	// A bad URL is refused, naming the forms accepted, and changes nothing.
	code, out, stderr = cliOut(t, d, "--app", appA, "drains", "add", "http://x")
	if code != 1 || out != "" {
		t.Errorf("drains add http://x: exit %d, output %q; want 1 and nothing", code, out)
	}
	for _, form := range []string{"syslog+tls://host:port", "syslog+tcp://host:port"} {
		if !strings.Contains(stderr, form) {
			t.Errorf("drains add http://x said %q, want it to name %s", stderr, form)
		}
	}
	if got := listDrains(appA); got != withDrain {
		t.Errorf("after a bad URL, drains of %s = %q, want %q", appA, got, withDrain)
	}

	// The drain survives a graceful restart and a crash.
	d.stop()
	d.restart()
	if got := listDrains(appA); got != withDrain {
		t.Errorf("after a restart, drains of %s = %q, want %q", appA, got, withDrain)
	}
	a = runDetached(t, d, appA, `echo "a after a restart"`)
	checkDrained(t, d, r, a, []string{"stdout:a after a restart"})
	d.kill()
	d.restart()
	a = runDetached(t, d, appA, `echo "a after a crash"`)
	checkDrained(t, d, r, a, []string{"stdout:a after a crash"})

	// Removed, the drain gets no more lines: those of a one-off run without
	// it are not among what a drain added again afterwards delivers.
	code, out, stderr = cliOut(t, d, "--app", appA, "drains", "remove", r.URL())
	if out = drainsShown(out); code != 0 || out != noDrainA {
		t.Fatalf("drains remove: exit %d, output %q (stderr %q); want 0 and %q", code, out, stderr, noDrainA)
	}
	if got := listDrains(appA); got != noDrainA {
		t.Errorf("after removal, drains of %s = %q, want %q", appA, got, noDrainA)
	}
	without := runDetached(t, d, appA, `echo "a without a drain"`)
	if got := texts(d.oneOffLines(without.ID)); len(got) != 1 {
		t.Fatalf("one-off without a drain logged %q, want 1 line", got)
	}
	if code, out, stderr = cliOut(t, d, "--app", appA, "drains", "add", r.URL()); code != 0 || drainsShown(out) != withDrain {
		t.Fatalf("drains add again: exit %d, output %q (stderr %q)", code, out, stderr)
	}
	a = runDetached(t, d, appA, `echo "a with the drain again"`)
	recs := checkDrained(t, d, r, a, []string{"stdout:a with the drain again"})

	for _, rec := range recs {
		if rec.App != appA || rec.Msg == "a without a drain" {
			t.Errorf("rsyslogd got %+v, want only %s's lines sent while it had the drain", rec, appA)
		}
	}
	d.waitNoContainers()
}

// TestDrains_ServerRestart stops the syslog server while a job prints and
// starts it again on its port: every line arrives, some maybe twice.
func TestDrains_ServerRestart(t *testing.T) {
	t.Parallel()
	r := testenv.StartRsyslog(t, false)
	d := startDrainDaemon(t, "--log-drains", r.URL())
	app := d.deploy(nil, "")
	const n = 300
	o := d.startDetached(app, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "line $i"; sleep 0.02; done`, n), "")

	r.WaitMsgs([]string{"line 30"})
	r.Stop()
	// Lines go on into the log while the server is down.
	down := len(d.oneOffLines(o.ID))
	deadline := time.Now().Add(20 * time.Second)
	for len(d.oneOffLines(o.ID)) < min(down+40, n) {
		if time.Now().After(deadline) {
			t.Fatalf("the job's lines stopped at %d while rsyslogd was down", len(d.oneOffLines(o.ID)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Start()

	if f := d.waitFinished(o.ID); f.Outcome != apitypes.Exited {
		t.Fatalf("outcome %s, want exited", f.Outcome)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("line %d", i+1)
	}
	recs := r.WaitMsgs(want)
	if len(recs) < n {
		t.Errorf("got %d records, want at least %d", len(recs), n)
	}
	t.Logf("%d records for %d lines; rsyslogd stopped when the log held %d", len(recs), n, down)
	for _, rec := range recs {
		if rec.MsgID == "stderr" && (strings.HasPrefix(rec.Msg, "Starting process with command `") || strings.HasPrefix(rec.Msg, "Process ")) {
			continue // the daemon's lines of the job's start and end
		}
		if rec.App != app || rec.ProcID != o.Name || rec.MsgID != "stdout" {
			t.Fatalf("record %+v, want app %s, procid %s, msgid stdout", rec, app, o.Name)
		}
	}
	d.waitNoContainers()
}
