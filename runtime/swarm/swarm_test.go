package swarm_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/registry"
	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/runtime/swarm"
)

// cluster is the test's swarm and a runtime on it.
type cluster struct {
	s        *testenv.Swarm
	rt       *swarm.Runtime
	opts     swarm.Options
	labels   map[string]string
	workers  map[string]int // node name to index in s.Nodes
	mu       sync.Mutex
	timings  []string
	instance string
}

// TestRuntime drives one-offs on a real swarm of three nodes, its manager
// drained so that every one-off runs on a worker, through the node's TLS
// listener.
func TestRuntime(t *testing.T) {
	begin := time.Now()
	s := testenv.StartSwarm(t, testenv.SwarmOptions{})
	t.Logf("swarm of %d nodes ready in %v", len(s.Nodes), time.Since(begin).Round(time.Millisecond))
	ctx := context.Background()
	mgr := s.Manager().Client(t)
	n, _, err := mgr.NodeInspectWithRaw(ctx, s.Manager().ID)
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Availability = dswarm.NodeAvailabilityDrain
	if err := mgr.NodeUpdate(ctx, n.ID, n.Version, n.Spec); err != nil {
		t.Fatalf("drain the manager: %v", err)
	}
	c := &cluster{s: s, workers: map[string]int{}, instance: fmt.Sprintf("test-%d", time.Now().UnixNano())}
	for i, n := range s.Nodes {
		if !n.Manager {
			c.workers[n.Name] = i
		}
	}
	c.labels = map[string]string{"oneoffd.test": c.instance}
	c.opts = swarm.Options{
		Manager:   s.Manager().TCPHost,
		TLS:       swarm.TLS{CACert: s.TLS.CACert, Cert: s.TLS.Cert, Key: s.TLS.Key},
		Instance:  c.instance,
		Isolation: docker.DefaultIsolation(c.instance),
	}
	c.rt = c.runtime(t)
	if err := c.rt.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Run("Create places on a worker and runs nothing yet", c.testCreate)
	t.Run("Start attached keeps the first output and the exit code", c.testAttached)
	t.Run("Start attached with piped stdin sees its end", c.testStdin)
	t.Run("Resize sets the attached TTY's size", c.testResize)
	t.Run("Signal reaches an attached command", c.testSignal)
	t.Run("Start detached logs every line and the exit code", c.testDetached)
	t.Run("CopyTo puts uploads in place before the command runs", c.testUploads)
	t.Run("Wait from a new runtime follows a running one-off", c.testWaitAfterRestart)
	t.Run("Stop reaches the command with SIGTERM", c.testStop)
	t.Run("Create fails for a size no node has", c.testTooBig)
	t.Run("the kernel's killing for memory is reported", c.testOOM)
	t.Run("List, Remove and Prune leave nothing", c.testListRemove)
	t.Run("a node lost mid-run ends the one-off with node_lost", c.testNodeLost)
	for _, l := range c.timings {
		t.Log(l)
	}
}

func (c *cluster) runtime(t *testing.T) *swarm.Runtime {
	t.Helper()
	rt, err := swarm.New(c.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func (c *cluster) timing(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timings = append(c.timings, fmt.Sprintf(format, args...))
}

// create makes a one-off of cmd, removed when the test ends.
func (c *cluster) create(t *testing.T, spec oneoff.Spec) oneoff.Placement {
	t.Helper()
	if spec.Image == "" {
		spec.Image = c.s.Image
	}
	if spec.Name == "" {
		spec.Name = "app." + strings.ReplaceAll(t.Name(), "/", ".") + "." + fmt.Sprint(time.Now().UnixNano())
	}
	spec.Labels = c.labels
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	p, err := c.rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	c.timing("Create→running on %s: %v", p.Node, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.rt.Remove(ctx, p.ID); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return p
}

func waitExit(t *testing.T, exit <-chan oneoff.Exit, within time.Duration) oneoff.Exit {
	t.Helper()
	select {
	case e := <-exit:
		return e
	case <-time.After(within):
		t.Fatalf("no exit within %v", within)
		return oneoff.Exit{}
	}
}

func (c *cluster) testCreate(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "echo ran >/tmp/ran"}, Limits: oneoff.Size{Memory: 64 << 20, CPUs: 0.5}})
	if _, ok := c.workers[p.Node]; !ok {
		t.Errorf("placed on %q, want one of the workers %v", p.Node, c.workers)
	}
	// Nothing of the command ran: no file, and the holder is the
	// container's process.
	cli := c.s.Nodes[c.workers[p.Node]].TCPClient(t)
	ctx := context.Background()
	list, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+p.ID))})
	if err != nil || len(list) != 1 {
		t.Fatalf("containers of the service on %s: %v, %v", p.Node, list, err)
	}
	if _, err := cli.ContainerStatPath(ctx, list[0].ID, "/tmp/ran"); err == nil {
		t.Errorf("the command ran before Start")
	}
	info, err := cli.ContainerInspect(ctx, list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.HostConfig.Memory, int64(64<<20); got != want {
		t.Errorf("memory limit %d, want %d", got, want)
	}
	if got, want := info.HostConfig.NanoCPUs, int64(5e8); got != want {
		t.Errorf("CPU limit %d, want %d", got, want)
	}
	if !slices.Contains(info.HostConfig.CapDrop, "ALL") {
		t.Errorf("capabilities dropped %v, want ALL", info.HostConfig.CapDrop)
	}
	t.Logf("security options on the node: %v", info.HostConfig.SecurityOpt)
}

// attached starts an attached one-off and collects its output.
type attached struct {
	proc           oneoff.Process
	stdout, stderr testenv.Buffer
	copied         chan error
	first          chan time.Time
}

type firstWriter struct {
	w    io.Writer
	once sync.Once
	at   chan time.Time
}

func (f *firstWriter) Write(p []byte) (int, error) {
	f.once.Do(func() { f.at <- time.Now() })
	return f.w.Write(p)
}

func (c *cluster) start(t *testing.T, id string, tty bool) (*attached, time.Time) {
	t.Helper()
	a := &attached{copied: make(chan error, 1), first: make(chan time.Time, 1)}
	started := time.Now()
	proc, err := c.rt.Start(context.Background(), id, oneoff.StartOptions{Attach: true, TTY: tty})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	a.proc = proc
	t.Cleanup(func() { proc.Stream.Close() })
	go func() { a.copied <- proc.Stream.CopyOutput(&firstWriter{w: &a.stdout, at: a.first}, &a.stderr) }()
	return a, started
}

func (c *cluster) testAttached(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "echo first; echo oops >&2; exit 3"}, Stdin: true})
	a, started := c.start(t, p.ID, false)
	select {
	case at := <-a.first:
		c.timing("Start→first output byte, attached: %v", at.Sub(started).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("no output")
	}
	if err := <-a.copied; err != nil {
		t.Fatalf("copy output: %v", err)
	}
	e := waitExit(t, a.proc.Exit, 30*time.Second)
	if e.Err != nil || e.Code != 3 {
		t.Errorf("got exit %+v, want code 3", e)
	}
	if got, want := a.stdout.String(), "first\n"; got != want {
		t.Errorf("got stdout %q, want %q", got, want)
	}
	if got, want := a.stderr.String(), "oops\n"; got != want {
		t.Errorf("got stderr %q, want %q", got, want)
	}
}

func (c *cluster) testStdin(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "cat; echo done"}, Stdin: true})
	a, _ := c.start(t, p.ID, false)
	if _, err := a.proc.Stream.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.proc.Stream.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, a.proc.Exit, 30*time.Second)
	<-a.copied
	if e.Err != nil || e.Code != 0 {
		t.Errorf("got exit %+v, want code 0", e)
	}
	if got, want := a.stdout.String(), "hello\ndone\n"; got != want {
		t.Errorf("got stdout %q, want %q", got, want)
	}
}

func (c *cluster) testResize(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "stty size; read x; stty size"}, TTY: true, Stdin: true})
	a, _ := c.start(t, p.ID, true)
	ctx := context.Background()
	waitFor(t, &a.stdout, "\n")
	if err := c.rt.Resize(ctx, p.ID, oneoff.TermSize{Rows: 40, Cols: 123}); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if _, err := a.proc.Stream.Write([]byte("go\r")); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, a.proc.Exit, 30*time.Second)
	<-a.copied
	if e.Err != nil || e.Code != 0 {
		t.Errorf("got exit %+v, want code 0", e)
	}
	if got := a.stdout.String(); !strings.Contains(got, "40 123") {
		t.Errorf("got output %q, want the size 40 123 after the resize", got)
	}
}

func (c *cluster) testSignal(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done"}, Stdin: true})
	a, _ := c.start(t, p.ID, false)
	waitFor(t, &a.stdout, "ready\n")
	if err := c.rt.Signal(context.Background(), p.ID, "INT"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	e := waitExit(t, a.proc.Exit, 30*time.Second)
	<-a.copied
	if e.Err != nil || e.Code != 7 {
		t.Errorf("got exit %+v, want code 7", e)
	}
	if got, want := a.stdout.String(), "ready\ngot INT\n"; got != want {
		t.Errorf("got stdout %q, want %q", got, want)
	}
}

// waitFor waits until b holds s.
func waitFor(t *testing.T, b *testenv.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("got %q, want %q in it", b.String(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLines reads a one-off's whole log.
func (c *cluster) logLines(t *testing.T, rt *swarm.Runtime, id string) (stdout, stderr []string) {
	t.Helper()
	lr, err := rt.Logs(context.Background(), id, oneoff.LogOptions{})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer lr.Close()
	for {
		e, err := lr.Next()
		if err == io.EOF {
			return stdout, stderr
		}
		if err != nil {
			t.Fatalf("read log: %v", err)
		}
		line := strings.TrimSuffix(string(e.Data), "\n")
		if e.Stream == "stderr" {
			stderr = append(stderr, line)
		} else {
			stdout = append(stdout, line)
		}
	}
}

func (c *cluster) testDetached(t *testing.T) {
	const n = 10000
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", fmt.Sprintf("seq 1 %d; echo oops >&2; exit 4", n)}, Logs: true})
	proc, err := c.rt.Start(context.Background(), p.ID, oneoff.StartOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	started := time.Now()
	e := waitExit(t, proc.Exit, time.Minute)
	if e.Err != nil || e.Code != 4 {
		t.Errorf("got exit %+v, want code 4", e)
	}
	c.timing("detached %d lines: Start→exit %v", n, time.Since(started).Round(time.Millisecond))
	read := time.Now()
	stdout, stderr := c.logLines(t, c.rt, p.ID)
	c.timing("detached %d lines: read the log in %v", n, time.Since(read).Round(time.Millisecond))
	if len(stdout) != n || stdout[0] != "1" || stdout[n-1] != fmt.Sprint(n) {
		t.Errorf("got %d stdout lines, want %d from 1 to %d", len(stdout), n, n)
	}
	if !slices.Equal(stderr, []string{"oops"}) {
		t.Errorf("got stderr %q, want [oops]", stderr)
	}
}

func (c *cluster) testUploads(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"cat", "/tmp/uploads/hello.txt"}, Logs: true})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "uploaded before the start\n"
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "uploads/", Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "uploads/hello.txt", Mode: 0o644, Size: int64(len(body))})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	ctx := context.Background()
	if err := c.rt.CopyTo(ctx, p.ID, "/tmp", &buf); err != nil {
		t.Fatalf("copy: %v", err)
	}
	proc, err := c.rt.Start(ctx, p.ID, oneoff.StartOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if e := waitExit(t, proc.Exit, 30*time.Second); e.Err != nil || e.Code != 0 {
		t.Errorf("got exit %+v, want code 0", e)
	}
	stdout, _ := c.logLines(t, c.rt, p.ID)
	if want := []string{strings.TrimSuffix(body, "\n")}; !slices.Equal(stdout, want) {
		t.Errorf("got %q, want %q", stdout, want)
	}
}

func (c *cluster) testWaitAfterRestart(t *testing.T) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "echo started; sleep 2; echo bye; exit 5"}, Logs: true})
	if _, err := c.rt.Start(context.Background(), p.ID, oneoff.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	// A new runtime, as a restarted daemon has, finds it by its ID.
	rt2 := c.runtime(t)
	list, err := rt2.List(context.Background(), c.labels)
	if err != nil {
		t.Fatal(err)
	}
	var found *oneoff.Container
	for i := range list {
		if list[i].ID == p.ID {
			found = &list[i]
		}
	}
	if found == nil || !found.Started || !found.Running || found.Node != p.Node {
		t.Errorf("listed %+v, want %s started and running on %s", found, p.ID, p.Node)
	}
	e := waitExit(t, rt2.Wait(context.Background(), p.ID), 30*time.Second)
	if e.Err != nil || e.Code != 5 {
		t.Errorf("got exit %+v, want code 5", e)
	}
	stdout, _ := c.logLines(t, rt2, p.ID)
	if want := []string{"started", "bye"}; !slices.Equal(stdout, want) {
		t.Errorf("got %q, want %q", stdout, want)
	}
}

func (c *cluster) testStop(t *testing.T) {
	cmd := []string{"sh", "-c", "trap 'echo term; exit 143' TERM; echo ready; while :; do sleep 0.1; done"}
	t.Run("detached", func(t *testing.T) {
		p := c.create(t, oneoff.Spec{Cmd: cmd, Logs: true})
		ctx := context.Background()
		proc, err := c.rt.Start(ctx, p.ID, oneoff.StartOptions{})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if out, _ := c.logLines(t, c.rt, p.ID); len(out) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := c.rt.Stop(ctx, p.ID, 10*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if e := waitExit(t, proc.Exit, 30*time.Second); e.Err != nil || e.Code != 143 {
			t.Errorf("got exit %+v, want code 143", e)
		}
		if out, _ := c.logLines(t, c.rt, p.ID); !slices.Equal(out, []string{"ready", "term"}) {
			t.Errorf("got %q, want [ready term]", out)
		}
	})
	t.Run("attached", func(t *testing.T) {
		p := c.create(t, oneoff.Spec{Cmd: cmd, Stdin: true})
		a, _ := c.start(t, p.ID, false)
		waitFor(t, &a.stdout, "ready\n")
		if err := c.rt.Stop(context.Background(), p.ID, 10*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if e := waitExit(t, a.proc.Exit, 30*time.Second); e.Err != nil || e.Code != 143 {
			t.Errorf("got exit %+v, want code 143", e)
		}
		<-a.copied
		if got, want := a.stdout.String(), "ready\nterm\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func (c *cluster) testTooBig(t *testing.T) {
	for _, size := range []oneoff.Size{{Memory: 1 << 40}, {CPUs: 64}} {
		t.Run(fmt.Sprintf("%+v", size), func(t *testing.T) {
			ctx := context.Background()
			start := time.Now()
			_, err := c.rt.Create(ctx, oneoff.Spec{Name: fmt.Sprintf("big.%d", time.Now().UnixNano()), Image: c.s.Image,
				Cmd: []string{"true"}, Labels: c.labels, Limits: size})
			t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
			e, ok := errdefs.As(err)
			if !ok || e.Code != "no_node_fits" {
				t.Fatalf("got %v, want a no_node_fits error", err)
			}
			list, err := c.rt.List(ctx, c.labels)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range list {
				if strings.HasPrefix(l.Labels["oneoffd.test"], c.instance) && l.Node == "" && !l.Started {
					t.Errorf("a service was left: %+v", l)
				}
			}
		})
	}
}

// ours lists the containers of this runtime on every node.
func (c *cluster) ours(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, n := range c.s.Nodes {
		cli := n.TCPClient(t)
		list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", "oneoffd.test="+c.instance))})
		if err != nil {
			t.Fatalf("list on %s: %v", n.Name, err)
		}
		for _, l := range list {
			out[n.Name] = append(out[n.Name], l.ID[:12]+" "+l.State)
		}
	}
	return out
}

func (c *cluster) testListRemove(t *testing.T) {
	ctx := context.Background()
	p := c.create(t, oneoff.Spec{Cmd: []string{"true"}})
	list, err := c.rt.List(ctx, c.labels)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(x oneoff.Container) bool { return x.ID == p.ID && !x.Started && x.Node == p.Node }) {
		t.Errorf("listed %+v, want %s, not started, on %s", list, p.ID, p.Node)
	}
	for _, l := range list {
		if err := c.rt.Remove(ctx, l.ID); err != nil {
			t.Errorf("remove %s: %v", l.ID, err)
		}
	}
	if err := c.rt.Remove(ctx, p.ID); err != nil {
		t.Errorf("remove again: %v", err)
	}
	if err := c.rt.Prune(ctx); err != nil {
		t.Errorf("prune: %v", err)
	}
	if list, err := c.rt.List(ctx, c.labels); err != nil || len(list) != 0 {
		t.Errorf("listed %+v, %v after remove, want nothing", list, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := c.ours(t)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left on the nodes: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) testNodeLost(t *testing.T) {
	ctx := context.Background()
	t.Run("detached", func(t *testing.T) { c.nodeLost(t, ctx, false) })
	t.Run("attached", func(t *testing.T) { c.nodeLost(t, ctx, true) })
}

func (c *cluster) nodeLost(t *testing.T, ctx context.Context, attach bool) {
	p := c.create(t, oneoff.Spec{Cmd: []string{"sh", "-c", "echo up; sleep 300"}, Logs: true, Stdin: attach})
	proc, err := c.rt.Start(ctx, p.ID, oneoff.StartOptions{Attach: attach})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if attach {
		var out testenv.Buffer
		go proc.Stream.CopyOutput(&out, &out)
		defer proc.Stream.Close()
		waitFor(t, &out, "up\n")
	}
	i := c.workers[p.Node]
	killed := time.Now()
	c.s.KillNode(i)
	e := waitExit(t, proc.Exit, time.Minute)
	c.timing("node killed → Exit with node_lost: %v", time.Since(killed).Round(time.Millisecond))
	if !oneoff.NodeLost(e.Err) {
		t.Errorf("got exit %+v, want a node_lost error", e)
	} else if !strings.Contains(e.Err.Error(), p.Node) {
		t.Errorf("got %q, want the node's name %s in it", e.Err, p.Node)
	}
	if !attach {
		// A daemon restarted meanwhile learns it from Wait.
		e := waitExit(t, c.runtime(t).Wait(ctx, p.ID), time.Minute)
		if !oneoff.NodeLost(e.Err) {
			t.Errorf("Wait from a new runtime: got exit %+v, want a node_lost error", e)
		}
	}
	// Back, its one-off's service removed: nothing of ours stays.
	c.s.RestartNode(i)
	if _, err := c.s.WaitNodeState(i, dswarm.NodeStateReady, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.rt.Remove(ctx, p.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.rt.Prune(ctx); err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("prune: %v", err)
		}
		left := c.ours(t)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left on the nodes: %v", left)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *cluster) testOOM(t *testing.T) {
	// The shell holds 64 MiB in a variable, over its 16 MiB limit.
	cmd := []string{"sh", "-c", "echo up; x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived"}
	spec := oneoff.Spec{Cmd: cmd, Limits: oneoff.Size{Memory: 16 << 20}}
	t.Run("detached", func(t *testing.T) {
		s := spec
		s.Logs = true
		p := c.create(t, s)
		proc, err := c.rt.Start(context.Background(), p.ID, oneoff.StartOptions{})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if e := waitExit(t, proc.Exit, time.Minute); e.Err != nil || !e.OOMKilled {
			t.Errorf("got exit %+v, want OOMKilled", e)
		}
	})
	t.Run("attached", func(t *testing.T) {
		s := spec
		s.Stdin = true
		p := c.create(t, s)
		a, _ := c.start(t, p.ID, false)
		e := waitExit(t, a.proc.Exit, time.Minute)
		<-a.copied
		if e.Err != nil || !e.OOMKilled {
			t.Errorf("got exit %+v, want OOMKilled; output %q", e, a.stdout.String())
		}
		// Whether the engine says so of the holder's container, which
		// runs on: the runtime reads the memory cgroup's count instead.
		cli := c.s.Nodes[c.workers[p.Node]].TCPClient(t)
		list, err := cli.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+p.ID))})
		if err == nil && len(list) == 1 {
			if info, err := cli.ContainerInspect(context.Background(), list[0].ID); err == nil {
				t.Logf("the holder's container: running %v, State.OOMKilled %v", info.State.Running, info.State.OOMKilled)
			}
		}
	})
}

// TestRuntime_registryAuth checks that the nodes pull with the credentials
// set with SetRegistryAuth, and that without them Create fails saying so.
func TestRuntime_registryAuth(t *testing.T) {
	s := testenv.StartSwarm(t, testenv.SwarmOptions{Nodes: 2, RegistryAuth: true})
	rt, err := swarm.New(swarm.Options{
		Manager:  s.Manager().TCPHost,
		TLS:      swarm.TLS{CACert: s.TLS.CACert, Cert: s.TLS.Cert, Key: s.TLS.Key},
		Instance: "test-auth",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	spec := oneoff.Spec{Image: s.Image, Cmd: []string{"true"}, Labels: map[string]string{"oneoffd.test": "auth"}}
	t.Run("without credentials", func(t *testing.T) {
		spec.Name = "noauth"
		_, err := rt.Create(ctx, spec)
		t.Logf("got %v", err)
		if err == nil {
			t.Fatal("created, want an error")
		}
		if !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("got %v, want an image_not_found or registry_unauthorized error", err)
		}
	})
	t.Run("with credentials", func(t *testing.T) {
		reg := s.Registry.AuthConfig()
		rt.SetRegistryAuth(map[string]registry.AuthConfig{s.Registry.Host(): reg})
		if err := rt.CanPull(ctx, s.Image); err != nil {
			t.Errorf("can pull: %v", err)
		}
		spec.Name = "auth"
		p, err := rt.Create(ctx, spec)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if err := rt.Remove(ctx, p.ID); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
}
