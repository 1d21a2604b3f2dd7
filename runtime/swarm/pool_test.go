package swarm_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/runtime/swarm"
)

// warmSwarm is a swarm of a manager, drained, and one worker, for the warm
// pool's tests.
type warmSwarm struct {
	s   *testenv.Swarm
	mgr *client.Client
}

// TestRuntime_warm drives the warm pool on a real swarm: attached one-offs
// take holders started ahead, with their own command, environment, files
// and labels; holders are replaced, expire, and go with Close or, after a
// restart, with Prune.
func TestRuntime_warm(t *testing.T) {
	s := testenv.StartSwarm(t, testenv.SwarmOptions{Nodes: 2})
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
	w := &warmSwarm{s: s, mgr: mgr}
	t.Run("an attached one-off takes a warm holder", w.testClaim)
	t.Run("a detached one-off takes none", w.testDetached)
	t.Run("a key unused for WarmIdle loses its holders", w.testIdle)
	t.Run("Close leaves nothing", w.testClose)
	t.Run("a restart leaves nothing of the old pool once pruned", w.testRestart)
}

func (w *warmSwarm) runtime(t *testing.T, instance string, warm int, idle time.Duration) *swarm.Runtime {
	t.Helper()
	rt, err := swarm.New(swarm.Options{
		Manager: w.s.Manager().TCPHost, TLS: swarm.TLS{CACert: w.s.TLS.CACert, Cert: w.s.TLS.Cert, Key: w.s.TLS.Key},
		Instance: instance, Warm: warm, WarmIdle: idle, Isolation: docker.DefaultIsolation(instance),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// spec is an attached one-off's spec of app, labelled as the test's.
func (w *warmSwarm) spec(instance, app string, cmd ...string) oneoff.Spec {
	id := fmt.Sprint(time.Now().UnixNano())
	return oneoff.Spec{
		Name: app + ".run." + id, Image: w.s.Image, App: app, Cmd: cmd, Stdin: true,
		Limits: oneoff.Size{Name: "small", Memory: 32 << 20},
		Labels: map[string]string{"oneoffd.test": instance, "oneoffd.id": id},
	}
}

// holders returns the warm holders of instance whose task runs, by service
// ID, with their task.
func (w *warmSwarm) holders(t *testing.T, instance string) map[string]dswarm.Task {
	t.Helper()
	ctx := context.Background()
	services, err := w.mgr.ServiceList(ctx, dswarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "oneoffd.swarm.pool"), filters.Arg("label", "oneoffd.swarm.instance="+instance))})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dswarm.Task{}
	for _, s := range services {
		tasks, err := w.mgr.TaskList(ctx, dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.ID))})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if task.Status.State == dswarm.TaskStateRunning {
				out[s.ID] = task
			}
		}
	}
	return out
}

// waitHolders waits until instance has want running holders, and returns
// them.
func (w *warmSwarm) waitHolders(t *testing.T, instance string, want int) map[string]dswarm.Task {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := w.holders(t, instance)
		if len(got) == want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d running warm holders, want %d", len(got), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ours returns the services and the containers on the nodes of instance.
func (w *warmSwarm) ours(t *testing.T, instance string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	services, err := w.mgr.ServiceList(ctx, dswarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "oneoffd.swarm.instance="+instance))})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services {
		out = append(out, "service "+s.Spec.Name)
	}
	for _, n := range w.s.Nodes {
		list, err := n.TCPClient(t).ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", "oneoffd.swarm.instance="+instance))})
		if err != nil {
			t.Fatalf("list on %s: %v", n.Name, err)
		}
		for _, c := range list {
			out = append(out, "container "+c.ID[:12]+" on "+n.Name)
		}
	}
	return out
}

// waitNothing waits until nothing of instance is left.
func (w *warmSwarm) waitNothing(t *testing.T, instance string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := w.ours(t, instance)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func create(t *testing.T, rt *swarm.Runtime, spec oneoff.Spec) oneoff.Placement {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Remove(context.Background(), p.ID); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return p
}

// run starts an attached one-off and returns its output and exit code.
func run(t *testing.T, rt *swarm.Runtime, id string) (string, int) {
	t.Helper()
	proc, err := rt.Start(context.Background(), id, oneoff.StartOptions{Attach: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer proc.Stream.Close()
	_ = proc.Stream.CloseWrite()
	var out testenv.Buffer
	copied := make(chan error, 1)
	go func() { copied <- proc.Stream.CopyOutput(&out, &out) }()
	e := waitExit(t, proc.Exit, 30*time.Second)
	<-copied
	if e.Err != nil {
		t.Fatalf("exit: %v", e.Err)
	}
	return out.String(), e.Code
}

func (w *warmSwarm) testClaim(t *testing.T) {
	const inst = "warm-claim"
	rt := w.runtime(t, inst, 1, time.Hour)
	ctx := context.Background()

	// The first one-off of its key finds no holder, and the pool learns
	// the key.
	first := create(t, rt, w.spec(inst, "app1", "true"))
	holders := w.waitHolders(t, inst, 1)
	if _, ok := holders[first.ID]; ok {
		t.Fatalf("the first one-off %s is listed as a holder", first.ID)
	}
	var holderID string
	var before dswarm.Task
	for id, task := range holders {
		holderID, before = id, task
	}
	list, err := rt.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == holderID {
			t.Errorf("List returned the warm holder %s: %+v", holderID, c)
		}
	}

	// The next takes it.
	spec := w.spec(inst, "app1", "sh", "-c", `echo "$GREETING"; cat /tmp/up/hello.txt`)
	spec.Env = []string{"GREETING=hello from the release"}
	started := time.Now()
	p := create(t, rt, spec)
	t.Logf("Create with a warm holder: %v", time.Since(started).Round(time.Millisecond))
	if p.ID != holderID {
		t.Fatalf("created %s, want the warm holder %s", p.ID, holderID)
	}
	worker := w.s.Nodes[1]
	if p.Node != worker.Name {
		t.Errorf("placed on %q, want the holder's node %q", p.Node, worker.Name)
	}
	list, err = rt.List(ctx, map[string]string{"oneoffd.id": spec.Labels["oneoffd.id"]})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != p.ID || list[0].Node != p.Node || list[0].Started {
		t.Errorf("listed %+v, want %s, on %s, not started", list, p.ID, p.Node)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "uploaded into a warm holder\n"
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "up/", Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "up/hello.txt", Mode: 0o644, Size: int64(len(body))})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	if err := rt.CopyTo(ctx, p.ID, "/tmp", &buf); err != nil {
		t.Fatalf("copy: %v", err)
	}
	out, code := run(t, rt, p.ID)
	if want := "hello from the release\n" + body; out != want || code != 0 {
		t.Errorf("got %q, exit %d, want %q, exit 0", out, code, want)
	}

	// The holder was made on the app's network.
	svc, _, err := w.mgr.ServiceInspectWithRaw(ctx, p.ID, dswarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nets := svc.Spec.TaskTemplate.Networks; len(nets) != 1 {
		t.Errorf("the one-off's service is on networks %+v, want its app's", nets)
	} else if nw, err := w.mgr.NetworkInspect(ctx, nets[0].Target, network.InspectOptions{}); err != nil || nw.Labels[oneoff.LabelApp] != "app1" {
		t.Errorf("the one-off's service is on network %+v (%v), want app1's", nw, err)
	}

	// Relabelling the service left its task as it was.
	tasks, err := w.mgr.TaskList(ctx, dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", p.ID))})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].ID != before.ID || tasks[0].Status.State != dswarm.TaskStateRunning ||
		tasks[0].Status.ContainerStatus.ContainerID != before.Status.ContainerStatus.ContainerID {
		t.Errorf("the one-off's tasks %+v, want only the holder's %s, running, in container %s", tasks, before.ID, before.Status.ContainerStatus.ContainerID)
	}

	// A replacement is started.
	again := w.waitHolders(t, inst, 1)
	if _, ok := again[p.ID]; ok {
		t.Errorf("the claimed %s is still a holder", p.ID)
	}

	// A new process (a daemon restarted) starts a one-off created with a
	// holder with the command and environment it was created with.
	spec = w.spec(inst, "app1", "sh", "-c", `echo "$GREETING"`)
	spec.Env = []string{"GREETING=still here"}
	p = create(t, rt, spec)
	if _, ok := again[p.ID]; !ok {
		t.Fatalf("created %s, want one of the warm holders %v", p.ID, again)
	}
	rt2 := w.runtime(t, inst, 0, 0)
	out, code = run(t, rt2, p.ID)
	if want := "still here\n"; out != want || code != 0 {
		t.Errorf("from a new runtime: got %q, exit %d, want %q, exit 0", out, code, want)
	}
}

func (w *warmSwarm) testDetached(t *testing.T) {
	const inst = "warm-detached"
	rt := w.runtime(t, inst, 1, time.Hour)
	create(t, rt, w.spec(inst, "app1", "true"))
	holders := w.waitHolders(t, inst, 1)
	spec := w.spec(inst, "app1", "echo", "detached")
	spec.Stdin, spec.Logs = false, true
	p := create(t, rt, spec)
	if _, ok := holders[p.ID]; ok {
		t.Errorf("the detached one-off took the warm holder %s", p.ID)
	}
	if got := w.holders(t, inst); len(got) != 1 {
		t.Errorf("got holders %v after a detached one-off, want the one of before", got)
	}
}

func (w *warmSwarm) testIdle(t *testing.T) {
	const inst = "warm-idle"
	rt := w.runtime(t, inst, 1, 3*time.Second)
	p := create(t, rt, w.spec(inst, "app1", "true"))
	w.waitHolders(t, inst, 1)
	if err := rt.Remove(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	w.waitNothing(t, inst)
}

func (w *warmSwarm) testClose(t *testing.T) {
	const inst = "warm-close"
	rt := w.runtime(t, inst, 2, time.Hour)
	// Two keys: two apps.
	p1 := create(t, rt, w.spec(inst, "app1", "true"))
	p2 := create(t, rt, w.spec(inst, "app2", "true"))
	w.waitHolders(t, inst, 4)
	ctx := context.Background()
	for _, id := range []string{p1.ID, p2.ID} {
		if err := rt.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// One more key, whose holders are still starting when Close comes.
	p3 := create(t, rt, w.spec(inst, "app3", "true"))
	if err := rt.Remove(ctx, p3.ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	w.waitNothing(t, inst)
	// The app networks go with the next Prune, as always.
	if err := w.runtime(t, inst, 0, 0).Prune(ctx); err != nil {
		t.Fatalf("prune: %v", err)
	}
	nets, err := w.mgr.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+inst))})
	if err != nil || len(nets) != 0 {
		t.Errorf("networks left after Prune: %+v, %v", nets, err)
	}
}

func (w *warmSwarm) testRestart(t *testing.T) {
	const inst = "warm-restart"
	old := w.runtime(t, inst, 2, time.Hour)
	ctx := context.Background()
	first := create(t, old, w.spec(inst, "app1", "true"))
	if err := old.Remove(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	holders := w.waitHolders(t, inst, 2)
	swarm.Abandon(old)

	rt := w.runtime(t, inst, 1, time.Hour)
	list, err := rt.List(ctx, map[string]string{"oneoffd.swarm.instance": inst})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if _, ok := holders[c.ID]; ok {
			t.Errorf("List returned the old process's warm holder %s", c.ID)
		}
	}
	if err := rt.Prune(ctx); err != nil {
		t.Fatalf("prune: %v", err)
	}
	if left := w.holders(t, inst); len(left) != 0 {
		t.Errorf("holders left after Prune: %v", left)
	}
	// The new process keeps its own.
	p := create(t, rt, w.spec(inst, "app1", "true"))
	if _, ok := holders[p.ID]; ok {
		t.Errorf("created %s, one of the old process's holders", p.ID)
	}
	mine := w.waitHolders(t, inst, 1)
	if err := rt.Prune(ctx); err != nil {
		t.Fatalf("prune: %v", err)
	}
	if got := w.holders(t, inst); len(got) != 1 {
		t.Errorf("got holders %v after Prune, want its own %v", got, mine)
	}
	if err := rt.Remove(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitNothing(t, inst)
}
