package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

// TestSwarm runs oneoffd on a real swarm of three nodes, each a Docker
// engine in a network namespace of its own, the image pulled by the nodes
// from a registry: one-offs are placed on the workers, their terminal and
// output come from the node's engine over mutual TLS, and a lost node ends
// what ran on it.
func TestSwarm(t *testing.T) {
	t.Parallel()
	sw := testenv.StartSwarm(t, testenv.SwarmOptions{})
	workers := map[string]int{}
	for i, n := range sw.Nodes {
		if !n.Manager {
			workers[n.Name] = i
		}
	}
	d := startDaemon(t, "--engine", "swarm", "--docker-host", sw.Manager().TCPHost, "--node-tls-dir", sw.TLS.Dir,
		"--placement", "node.role==worker", "--place-timeout", "10s", "--stop-grace", "1s",
		"--sizes", "S:256MiB:0.5:256,M:512MiB:1:512,huge:1TiB:1:512", "--default-size", "M",
		"--log-retention", "256MiB", "--reconcile-interval", "2s")
	app := d.deployImageOf(sw.Image)
	onWorker := func(t *testing.T, o apitypes.OneOff) {
		t.Helper()
		if _, ok := workers[o.Node]; !ok {
			t.Errorf("one-off %s ran on node %q, want one of the workers %v", o.Name, o.Node, workers)
		}
	}

	t.Run("attached shell on a worker", func(t *testing.T) {
		tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 33, 101)
		tm.expect(`# `)
		tm.send("echo $((6*7))\r")
		tm.expect(`\n42\r?\n`)
		tm.send("stty size\r")
		if got := tm.expect(`\n(\d+ \d+)\r?\n`)[1]; got != "33 101" {
			t.Errorf("stty size = %q, want 33 101", got)
		}
		tm.resize(40, 120)
		deadline := time.Now().Add(10 * time.Second)
		for {
			tm.send("stty size\r")
			if got := tm.expect(`\n(\d+ \d+)\r?\n`)[1]; got == "40 120" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("stty size = %q after resize, want 40 120", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		tm.send("sleep 60\r")
		time.Sleep(300 * time.Millisecond)
		tm.send("\x03")
		tm.send("echo status=$?\r")
		if got := tm.expect(`status=(\d+)`)[1]; got != "130" {
			t.Errorf("sleep's status after Ctrl-C = %s, want 130", got)
		}
		tm.send("exit 3\r")
		if got := tm.wait(); got != 3 {
			t.Errorf("CLI exit code = %d, want 3; screen:\n%s", got, tm.screen())
		}
		o := d.lastOneOff(app)
		if o.Outcome != apitypes.Exited || o.ExitCode == nil || *o.ExitCode != 3 {
			t.Errorf("record %s/%v, want exited/3", o.Outcome, o.ExitCode)
		}
		onWorker(t, o)
	})

	t.Run("piped stdin, early output and the exit code", func(t *testing.T) {
		cmd := d.cli("--app", app, "run", "echo first; cat; exit 4")
		cmd.Stdin = strings.NewReader("hi\nthere\n")
		out, err := cmd.Output()
		if code := exitCode(t, err); code != 4 {
			t.Errorf("exit code = %d, want 4", code)
		}
		if got, want := string(out), "first\nhi\nthere\n"; !strings.HasSuffix(got, want) {
			t.Errorf("stdout = %q, want it to end with %q", got, want)
		}
	})

	t.Run("uploads are there before the command starts", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "data.txt")
		if err := os.WriteFile(file, []byte("uploaded\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := d.cli("--app", app, "run", "--file", file, "cat /tmp/uploads/data.txt").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "uploaded") {
			t.Errorf("got %v, %q; want the file's content", err, out)
		}
	})

	t.Run("sizes become the task's limits", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--size", "S", readLimits).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got, want := strings.Join(strings.Fields(string(out)), " "), "mem=268435456 cpu=50000/100000 pids=256"; got != want {
			t.Errorf("limits in the container = %q, want %q", got, want)
		}
	})

	t.Run("a one-off too big for any node fails, saying so", func(t *testing.T) {
		start := time.Now()
		out, err := d.cli("--app", app, "run", "--size", "huge", "true").CombinedOutput()
		if code := exitCode(t, err); code == 0 {
			t.Fatalf("a one-off of 1 TiB ran: %s", out)
		}
		if !strings.Contains(string(out), "no node") {
			t.Errorf("output %q does not say that no node has room", out)
		}
		t.Logf("refused after %s: %s", time.Since(start).Round(time.Millisecond), out)
	})

	t.Run("a detached job's million lines", func(t *testing.T) {
		const n = 1000000
		o := d.startDetached(app, fmt.Sprintf("seq 1 %d; printf 'the end'", n), "")
		f := d.waitFinishedWithin(o.ID, 3*time.Minute)
		if f.Outcome != apitypes.Exited {
			t.Fatalf("outcome = %s (%s)", f.Outcome, f.Error)
		}
		onWorker(t, f)
		d.checkCounted(o.ID, n)
	})

	t.Run("the daemon killed and restarted mid-job", func(t *testing.T) {
		counting := d.startDetached(app, `i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "line $i"; sleep 0.01; done`, "")
		deadline := time.Now().Add(30 * time.Second)
		for len(d.oneOffLines(counting.ID)) < 20 {
			if time.Now().After(deadline) {
				t.Fatal("the job's lines do not reach the store")
			}
			time.Sleep(50 * time.Millisecond)
		}
		d.kill()
		time.Sleep(time.Second) // it runs on without the daemon
		d.restart()
		f := d.waitFinishedWithin(counting.ID, time.Minute)
		if f.Outcome != apitypes.Exited || f.ExitCode == nil || *f.ExitCode != 0 {
			t.Errorf("finished %s/%v (%s), want exited/0", f.Outcome, f.ExitCode, f.Error)
		}
		got := texts(d.oneOffLines(counting.ID))
		if len(got) != 300 {
			t.Errorf("%d lines, want 300", len(got))
		}
		for i, l := range got {
			if want := fmt.Sprintf("stdout:line %d", i+1); l != want {
				t.Fatalf("line %d = %q, want %q", i+1, l, want)
			}
		}
	})

	t.Run("operators see the node", func(t *testing.T) {
		o := d.startDetached(app, "sleep 30", "")
		var rec apitypes.OneOff
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if rec, err = d.client().OneOff(context.Background(), o.ID); err != nil {
				t.Fatal(err)
			}
			if rec.State == apitypes.Running || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		onWorker(t, rec)
		ps, _ := d.cli("--app", app, "ps").CombinedOutput()
		if !regexp.MustCompile(regexp.QuoteMeta(rec.Name) + `\s+running\s+\S+\s+` + regexp.QuoteMeta(rec.Node)).Match(ps) {
			t.Errorf("oneoff ps does not show %s on %s:\n%s", rec.Name, rec.Node, ps)
		}
		inspect, _ := d.cli("--app", app, "inspect", rec.Name).CombinedOutput()
		if !regexp.MustCompile(`Node:\s+` + regexp.QuoteMeta(rec.Node)).Match(inspect) {
			t.Errorf("oneoff inspect does not show the node:\n%s", inspect)
		}
		if v, ok := d.scrape()[`oneoffd_node_oneoffs_running{node="`+rec.Node+`"}`]; !ok || v < 1 {
			t.Errorf("oneoffd_node_oneoffs_running for %s = %v (%v), want at least 1", rec.Node, v, ok)
		}
		if out, err := d.cli("--app", app, "stop", rec.Name).CombinedOutput(); err != nil {
			t.Fatalf("stop: %v: %s", err, out)
		}
		d.waitFinishedWithin(o.ID, 30*time.Second)
		audit, _ := d.cli("audit", "--oneoff", rec.ID).CombinedOutput()
		if !strings.Contains(string(audit), "(node "+rec.Node+")") {
			t.Errorf("the audit trail does not say where it ran:\n%s", audit)
		}
	})

	t.Run("reapers and limits", func(t *testing.T) {
		reapers(t, sw, workers)
	})

	// A node lost mid-session: in the test's own goroutine, as the
	// swarm's node helpers want.
	lostNode(t, d, sw, app, workers)

	t.Run("nothing of ours is left on any node", func(t *testing.T) {
		d.waitNoOneOffs(app)
		for i := range sw.Nodes {
			waitNothingOnNode(t, sw, i, d.instance)
		}
		svcs, err := sw.Manager().Client(t).ServiceList(context.Background(), swarmServiceOptions(d.instance))
		if err != nil {
			t.Fatal(err)
		}
		if len(svcs) > 0 {
			t.Errorf("%d services left, e.g. %s", len(svcs), svcs[0].Spec.Name)
		}
	})
}

// deployImageOf registers a release of image for a fresh app and returns
// the app's name.
func (d *daemon) deployImageOf(image string) string {
	d.t.Helper()
	app := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(d.t.Name()), "-")
	app = strings.Trim(app[:min(len(app), 40)], "-")
	if _, err := d.client().Deploy(context.Background(), app, apitypes.Deploy{Image: image}); err != nil {
		d.t.Fatalf("deploy %s: %v", app, err)
	}
	return app
}

// lastOneOff returns app's newest one-off.
func (d *daemon) lastOneOff(app string) apitypes.OneOff {
	d.t.Helper()
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app, Limit: 1})
	if err != nil || len(list) == 0 {
		d.t.Fatalf("list one-offs of %s: %v (%d)", app, err, len(list))
	}
	return list[0]
}

// waitNoOneOffs waits until none of app's one-offs is pending or running.
func (d *daemon) waitNoOneOffs(app string) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := d.client().OneOffs(context.Background(), client.Filter{App: app, Limit: apitypes.MaxListLimit})
		if err != nil {
			d.t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(o apitypes.OneOff) bool { return o.State != apitypes.Finished }) {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("one-offs of %s still unfinished after a minute", app)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNothingOnNode waits until node i's engine has no container of the
// daemon's instance.
func waitNothingOnNode(t *testing.T, sw *testenv.Swarm, i int, instance string) {
	t.Helper()
	cli := sw.Nodes[i].Client(t)
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+instance))
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: args})
		if err == nil && len(list) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("node %s still has %d container(s) of ours after a minute (%v)", sw.Nodes[i].Name, len(list), err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// swarmServiceOptions lists the services of a daemon's instance.
func swarmServiceOptions(instance string) swarm.ServiceListOptions {
	return swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+instance))}
}

// lostNode kills the engine of the node running an attached session: the
// session must end within 30s, lost, saying so; once the node is back,
// nothing of the daemon's is left on it.
func lostNode(t *testing.T, d *daemon, sw *testenv.Swarm, app string, workers map[string]int) {
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	tm.send("echo ready\r")
	tm.expect(`\nready\r?\n`)
	o := d.lastOneOff(app)
	i, ok := workers[o.Node]
	if !ok {
		t.Fatalf("the session runs on %q, not a worker", o.Node)
	}
	// Detached jobs too, some of them on that node: Swarm spreads them.
	var jobs []apitypes.OneOff
	for len(jobs) < 4 && !slices.ContainsFunc(jobs, func(j apitypes.OneOff) bool { return j.Node == o.Node }) {
		c := d.startDetached(app, "echo up; sleep 600", "")
		jobs = append(jobs, c.OneOff)
	}
	sw.KillNode(i)
	killed := time.Now()
	code := tm.wait()
	took := time.Since(killed)
	t.Logf("the session ended %s after the node's engine was killed", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("the session ended %s after the node was lost, want within 30s", took)
	}
	if code == 0 {
		t.Errorf("CLI exit code 0 after the node was lost")
	}
	t.Logf("the terminal's last words: %q", lastLines(tm.screen(), 2))
	if !strings.Contains(tm.screen(), "lost") {
		t.Errorf("the terminal was not told the node was lost:\n%s", tm.screen())
	}
	f := d.waitFinishedWithin(o.ID, 30*time.Second)
	if f.Outcome != apitypes.Lost || !strings.Contains(f.Error, o.Node) {
		t.Errorf("record %s: %q, want lost naming node %s", f.Outcome, f.Error, o.Node)
	}
	lost := 0
	for _, j := range jobs {
		if j.Node != o.Node {
			if out, err := d.cli("--app", app, "stop", j.Name).CombinedOutput(); err != nil {
				t.Errorf("stop %s on the other worker: %v: %s", j.Name, err, out)
			}
			continue
		}
		lost++
		f := d.waitFinishedWithin(j.ID, time.Until(killed.Add(30*time.Second))+time.Second)
		if f.Outcome != apitypes.Lost || !strings.Contains(f.Error, o.Node) {
			t.Errorf("job %s: %s: %q, want lost naming node %s", j.Name, f.Outcome, f.Error, o.Node)
		}
		if got := d.lifecycleLines(j.ID); len(got) == 0 || !strings.Contains(got[len(got)-1], "lost") {
			t.Errorf("job %s: its app log ends with %q, want a line saying it was lost", j.Name, got)
		}
	}
	if lost == 0 {
		t.Errorf("no detached job landed on node %s among %d", o.Node, len(jobs))
	}
	sw.RestartNode(i)
	if _, err := sw.WaitNodeState(i, swarm.NodeStateReady, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitNothingOnNode(t, sw, i, d.instance)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// reapers runs a second daemon on the swarm with short timeouts: the idle
// reaper, the wait for a terminal, a terminal that goes away, a detached
// job's lifetime and the kernel's out-of-memory kill in both modes end
// their one-offs as on one engine, and leave nothing on the nodes.
func reapers(t *testing.T, sw *testenv.Swarm, workers map[string]int) {
	d := startDaemon(t, "--engine", "swarm", "--docker-host", sw.Manager().TCPHost, "--node-tls-dir", sw.TLS.Dir,
		"--placement", "node.role==worker", "--stop-grace", "1s",
		"--idle-timeout", "2s", "--attach-wait-timeout", "2s", "--reconnect-grace", "1s",
		"--sizes", "tiny:16MiB:0.25:64,M:512MiB:1:512", "--default-size", "M")
	app := d.deployImageOf(sw.Image)
	ctx := context.Background()

	t.Run("idle", func(t *testing.T) {
		tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
		tm.expect(`# `)
		tm.send("echo still here\r")
		tm.expect(`still here\r?\n`)
		if code := tm.wait(); code == 0 {
			t.Errorf("CLI exit code 0 after an idle close")
		}
		tm.expect(`closed after 2s without input or output`)
		if f := d.waitFinishedWithin(d.lastOneOff(app).ID, 30*time.Second); f.Outcome != apitypes.IdleTimeout {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.IdleTimeout)
		}
	})
	t.Run("nobody attaches", func(t *testing.T) {
		o, err := d.client().CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}})
		if err != nil {
			t.Fatal(err)
		}
		if f := d.waitFinishedWithin(o.ID, 30*time.Second); f.Outcome != apitypes.AttachTimeout {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.AttachTimeout)
		}
	})
	t.Run("the terminal goes away", func(t *testing.T) {
		tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
		tm.expect(`# `)
		tm.send("sleep 600\r")
		time.Sleep(200 * time.Millisecond)
		_ = tm.cmd.Process.Signal(syscall.SIGKILL)
		tm.wait()
		if f := d.waitFinishedWithin(d.lastOneOff(app).ID, 30*time.Second); f.Outcome != apitypes.Disconnected {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.Disconnected)
		}
	})
	t.Run("a detached job's lifetime", func(t *testing.T) {
		o := d.startDetached(app, "echo up; sleep 600", "2s")
		if f := d.waitFinishedWithin(o.ID, 30*time.Second); f.Outcome != apitypes.LifetimeExceeded {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.LifetimeExceeded)
		}
		if got := texts(d.oneOffLines(o.ID)); strings.Join(got, ",") != "stdout:up" {
			t.Errorf("lines = %q, want just up", got)
		}
	})
	// dd's 64 MiB buffer cannot fit in 16 MiB: the kernel kills it.
	const hog = "dd if=/dev/zero of=/dev/null bs=64M count=1"
	t.Run("out of memory, attached", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--size", "tiny", hog).CombinedOutput()
		if code := exitCode(t, err); code != 137 || !strings.Contains(string(out), "ran out of memory (size tiny allows 16 MiB)") {
			t.Errorf("got %d, %q; want 137, saying it ran out of memory", code, out)
		}
		if f := d.lastOneOff(app); f.Outcome != apitypes.OutOfMemory {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.OutOfMemory)
		}
	})
	t.Run("out of memory, detached", func(t *testing.T) {
		o, err := d.client().CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: hog}, Detached: true, Size: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		f := d.waitFinishedWithin(o.ID, 30*time.Second)
		if f.Outcome != apitypes.OutOfMemory || !strings.Contains(f.Error, "ran out of memory") {
			t.Errorf("outcome = %s (%q), want %s", f.Outcome, f.Error, apitypes.OutOfMemory)
		}
		if got := d.lifecycleLines(o.ID); len(got) == 0 || !strings.Contains(got[len(got)-1], "out of memory") {
			t.Errorf("lifecycle lines %q, want the last to say out of memory", got)
		}
	})
	d.waitNoOneOffs(app)
	for _, i := range workers {
		waitNothingOnNode(t, sw, i, d.instance)
	}
}
