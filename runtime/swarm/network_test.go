package swarm_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/runtime/swarm"
)

// netTest is a swarm whose one-offs are placed on the node the test picks,
// by runtimes of one instance.
type netTest struct {
	t        *testing.T // the test, whose end closes the runtimes
	s        *testenv.Swarm
	opts     swarm.Options
	instance string
	labels   map[string]string
	rts      map[string]*swarm.Runtime // by node ID and isolation

	mu      sync.Mutex
	timings map[string][]time.Duration
}

// listenPort is where a listener one-off answers each connection with the
// count of the bytes it received.
const listenPort = 8080

// payload is how many bytes a dialer sends: far more than one packet, so
// that an MTU too large for the links would show.
const payload = 1000000

// TestRuntime_AppNetworks checks on a real swarm that each app's one-offs
// are on an overlay network of their own: another app's one-off reaches
// none of them, on the same node or another, while the app's own do, across
// nodes; egress works; Prune removes the network once unused.
func TestRuntime_AppNetworks(t *testing.T) {
	s := testenv.StartSwarm(t, testenv.SwarmOptions{})
	nt := &netTest{t: t, s: s, instance: fmt.Sprintf("net-%d", time.Now().UnixNano()), rts: map[string]*swarm.Runtime{},
		timings: map[string][]time.Duration{}}
	nt.labels = map[string]string{"oneoffd.test": nt.instance}
	nt.opts = swarm.Options{
		Manager:   s.Manager().TCPHost,
		TLS:       swarm.TLS{CACert: s.TLS.CACert, Cert: s.TLS.Cert, Key: s.TLS.Key},
		Instance:  nt.instance,
		Isolation: docker.DefaultIsolation(nt.instance),
	}
	ctx := context.Background()
	w1, w2 := s.Nodes[1], s.Nodes[2]

	// Before any app network: the cost of a Create without one.
	for range 3 {
		nt.create(t, w1, oneoff.Spec{Cmd: []string{"true"}}, "Create, no app")
	}
	lis := nt.create(t, w1, oneoff.Spec{App: "alpha", Cmd: []string{"nc", "-ll", "-p", strconv.Itoa(listenPort), "-e", "wc", "-c"}, Logs: true},
		"Create, the app's first (the network made)")
	nt.start(t, w1, lis.ID)
	ip := nt.overlayIP(t, lis.ID, "alpha")
	gw := nt.gatewayIP(t, w1, lis.ID)
	name := nt.serviceName(t, lis.ID)
	t.Logf("alpha's listener %s on %s: %s on its app network, %s on docker_gwbridge", name, w1.Name, ip, gw)

	t.Run("the network is the app's overlay, labelled, not attachable", func(t *testing.T) {
		name, _ := docker.NetworkNames(nt.instance, "alpha")
		nw, err := s.Manager().Client(t).NetworkInspect(ctx, name, network.InspectOptions{})
		if err != nil {
			t.Fatalf("inspect the app's network: %v", err)
		}
		if nw.Driver != "overlay" || nw.Scope != "swarm" || nw.Attachable {
			t.Errorf("driver %q, scope %q, attachable %v; want overlay, swarm, not attachable", nw.Driver, nw.Scope, nw.Attachable)
		}
		want := map[string]string{oneoff.LabelManaged: "true", oneoff.LabelInstance: nt.instance, oneoff.LabelApp: "alpha"}
		for k, v := range want {
			if nw.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, nw.Labels[k], v)
			}
		}
		svc, _, err := s.Manager().Client(t).ServiceInspectWithRaw(ctx, lis.ID, dswarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := svc.Spec.TaskTemplate.Networks; len(got) != 1 || got[0].Target != nw.ID {
			t.Errorf("service networks %+v, want the app's %s", got, nw.ID)
		}
		if e := svc.Spec.EndpointSpec; e == nil || e.Mode != dswarm.ResolutionModeDNSRR {
			t.Errorf("endpoint spec %+v, want mode dnsrr", e)
		}
	})
	t.Run("the network leaves room on the nodes' links for VXLAN's 50 bytes", func(t *testing.T) {
		bridge, err := s.Manager().Client(t).NetworkInspect(ctx, "bridge", network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		link, err := strconv.Atoi(bridge.Options["com.docker.network.driver.mtu"])
		if err != nil {
			t.Fatalf("the test engines' MTU: %v", err)
		}
		rt := nt.runtime(t, w2, nt.opts.Isolation)
		p := nt.createWith(t, rt, oneoff.Spec{App: "alpha", Cmd: []string{"cat", "/sys/class/net/eth0/mtu"}, Logs: true}, "")
		proc, err := rt.Start(ctx, p.ID, oneoff.StartOptions{})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		waitExit(t, proc.Exit, time.Minute)
		out, _ := logLines(t, rt, p.ID)
		if want := strconv.Itoa(link - 50); !slices.Equal(out, []string{want}) {
			t.Errorf("the app network's interface has MTU %q, want %s: the links' %d less VXLAN's 50", out, want, link)
		}
	})
	t.Run("the same app connects, on another node, also by service name", func(t *testing.T) {
		for _, addr := range []string{ip, name} {
			if out, ok := nt.dial(t, w2, "alpha", addr, listenPort); !ok {
				t.Errorf("a one-off of alpha on %s did not reach alpha's listener at %s: %q", w2.Name, addr, out)
			}
		}
	})
	t.Run("the same app connects, on the same node", func(t *testing.T) {
		if out, ok := nt.dial(t, w1, "alpha", ip, listenPort); !ok {
			t.Fatalf("a one-off of alpha on %s did not reach alpha's listener at %s: %q", w1.Name, ip, out)
		}
	})
	t.Run("another app cannot, on the same node", func(t *testing.T) {
		for _, addr := range []string{ip, gw} {
			if out, ok := nt.dial(t, w1, "beta", addr, listenPort); ok {
				t.Errorf("a one-off of beta on %s reached alpha's listener at %s: %q", w1.Name, addr, out)
			}
		}
	})
	t.Run("another app cannot, on another node, nor by service name", func(t *testing.T) {
		for _, addr := range []string{ip, name} {
			if out, ok := nt.dial(t, w2, "beta", addr, listenPort); ok {
				t.Errorf("a one-off of beta on %s reached alpha's listener at %s: %q", w2.Name, addr, out)
			}
		}
	})
	t.Run("egress reaches the network's host", func(t *testing.T) {
		host, port := nt.hostListener(t)
		for _, w := range []*testenv.SwarmNode{w1, w2} {
			if out, ok := nt.dial(t, w, "alpha", host, port); !ok {
				t.Errorf("a one-off of alpha on %s did not reach %s:%d: %q", w.Name, host, port, out)
			}
		}
	})
	t.Run("app networks off: one-offs share the default bridge", func(t *testing.T) {
		iso := docker.DefaultIsolation(nt.instance)
		iso.AppNetworks = false
		off := nt.runtime(t, w1, iso)
		p := nt.createWith(t, off, oneoff.Spec{App: "gamma", Cmd: []string{"nc", "-ll", "-p", strconv.Itoa(listenPort), "-e", "wc", "-c"}, Logs: true}, "")
		if _, err := off.Start(ctx, p.ID, oneoff.StartOptions{}); err != nil {
			t.Fatalf("start: %v", err)
		}
		addr := nt.bridgeIP(t, w1, p.ID)
		if out, ok := nt.dialWith(t, off, "delta", addr, listenPort); !ok {
			t.Errorf("with app networks off, a one-off of delta did not reach gamma's at %s: %q", addr, out)
		}
		for _, app := range []string{"gamma", "delta"} {
			name, _ := docker.NetworkNames(nt.instance, app)
			if _, err := s.Manager().Client(t).NetworkInspect(ctx, name, network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
				t.Errorf("network of %s with app networks off: %v, want not found", app, err)
			}
		}
	})
	t.Run("Creates of a new app at once, from two runtimes, share one network", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, w := range []*testenv.SwarmNode{w1, w2, w1, w2} {
			rt := nt.runtime(t, w, nt.opts.Isolation)
			wg.Add(1)
			go func() {
				defer wg.Done()
				nt.createWith(t, rt, oneoff.Spec{App: "epsilon", Cmd: []string{"true"}}, "")
			}()
		}
		wg.Wait()
		got := nt.networks(t)
		if n := len(slices.DeleteFunc(slices.Clone(got), func(a string) bool { return a != "epsilon" })); n != 1 {
			t.Errorf("networks %v, want one of epsilon", got)
		}
	})
	t.Run("a network another runtime pruned is made again", func(t *testing.T) {
		rt1, rt2 := nt.runtime(t, w1, nt.opts.Isolation), nt.runtime(t, w2, nt.opts.Isolation)
		p := nt.createWith(t, rt1, oneoff.Spec{App: "zeta", Cmd: []string{"true"}}, "")
		if err := rt1.Remove(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for slices.Contains(nt.networks(t), "zeta") {
			if time.Now().After(deadline) {
				t.Fatal("zeta's network still there after a minute of prunes")
			}
			if err := rt2.Prune(ctx); err != nil {
				t.Fatalf("prune: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// rt1 still knows the network's ID from its first Create.
		p = nt.createWith(t, rt1, oneoff.Spec{App: "zeta", Cmd: []string{"true"}}, "")
		if !slices.Contains(nt.networks(t), "zeta") {
			t.Errorf("created %s without zeta's network", p.ID)
		}
	})
	t.Run("Prune removes the networks no service is on, and nothing is left", func(t *testing.T) {
		rt := nt.runtime(t, w1, nt.opts.Isolation)
		if err := rt.Prune(ctx); err != nil {
			t.Fatalf("prune: %v", err)
		}
		if got := nt.networks(t); !slices.Contains(got, "alpha") {
			t.Fatalf("networks after a prune with alpha's listener running: %v, want alpha's kept", got)
		}
		list, err := rt.List(ctx, nt.labels)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if err := rt.Remove(ctx, c.ID); err != nil {
				t.Errorf("remove %s: %v", c.ID, err)
			}
		}
		start := time.Now()
		deadline := start.Add(time.Minute)
		for {
			if err := rt.Prune(ctx); err != nil {
				t.Errorf("prune: %v", err)
			}
			left, onNodes := nt.networks(t), nt.nodeNetworks(t)
			if len(left) == 0 && len(onNodes) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a minute of prunes: app networks %v on the manager, %v on the nodes", left, onNodes)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("the app networks were gone from the manager and the nodes %v after the services' removal", time.Since(start).Round(time.Millisecond))
		if left := nt.containers(t); len(left) > 0 {
			t.Errorf("containers left: %v", left)
		}
	})
	nt.logTimings(t)
}

// runtime returns a runtime of the test's instance that places one-offs on
// node n, with isolation iso.
func (nt *netTest) runtime(t *testing.T, n *testenv.SwarmNode, iso docker.Isolation) *swarm.Runtime {
	t.Helper()
	key := fmt.Sprintf("%s %v", n.ID, iso.AppNetworks)
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if rt := nt.rts[key]; rt != nil {
		return rt
	}
	opts := nt.opts
	opts.Isolation = iso
	opts.Placement = []string{"node.id==" + n.ID}
	rt, err := swarm.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Closed at the test's end, not at the end of the subtest that made it.
	nt.t.Cleanup(func() { rt.Close() })
	nt.rts[key] = rt
	return rt
}

// create makes a one-off on node n, removed when the test ends; what is
// not empty names the Create's timing.
func (nt *netTest) create(t *testing.T, n *testenv.SwarmNode, spec oneoff.Spec, what string) oneoff.Placement {
	t.Helper()
	p := nt.createWith(t, nt.runtime(t, n, nt.opts.Isolation), spec, what)
	if p.Node != n.Name {
		t.Fatalf("placed on %s, want %s", p.Node, n.Name)
	}
	return p
}

func (nt *netTest) createWith(t *testing.T, rt *swarm.Runtime, spec oneoff.Spec, what string) oneoff.Placement {
	t.Helper()
	spec.Image = nt.s.Image
	spec.Name = fmt.Sprintf("net-%s-%d", spec.App, time.Now().UnixNano())
	spec.Labels = nt.labels
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	p, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if what != "" {
		nt.mu.Lock()
		nt.timings[what] = append(nt.timings[what], time.Since(start))
		nt.mu.Unlock()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.Remove(ctx, p.ID); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return p
}

// start releases a detached one-off on node n.
func (nt *netTest) start(t *testing.T, n *testenv.SwarmNode, id string) oneoff.Process {
	t.Helper()
	proc, err := nt.runtime(t, n, nt.opts.Isolation).Start(context.Background(), id, oneoff.StartOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return proc
}

// dial runs a one-off of app on node n that sends payload bytes to
// addr:port, a few times until one gets an answer, and says whether one
// answered with the count, with what it printed.
func (nt *netTest) dial(t *testing.T, n *testenv.SwarmNode, app, addr string, port int) (string, bool) {
	t.Helper()
	what := "Create, the app's next"
	if nt.first(n, app) {
		what = "Create, the app's first on the node"
	}
	rt := nt.runtime(t, n, nt.opts.Isolation)
	return nt.dialOn(t, rt, app, addr, port, what)
}

// first notes that app has a one-off on node n, and reports whether it is
// the first.
func (nt *netTest) first(n *testenv.SwarmNode, app string) bool {
	key := "seen " + n.ID + " " + app
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if _, ok := nt.timings[key]; ok {
		return false
	}
	nt.timings[key] = nil
	return true
}

func (nt *netTest) dialWith(t *testing.T, rt *swarm.Runtime, app, addr string, port int) (string, bool) {
	t.Helper()
	return nt.dialOn(t, rt, app, addr, port, "")
}

func (nt *netTest) dialOn(t *testing.T, rt *swarm.Runtime, app, addr string, port int, what string) (string, bool) {
	t.Helper()
	script := fmt.Sprintf(`for i in 1 2 3 4; do
  out=$(head -c %d /dev/zero | nc -w 2 %s %d) && [ -n "$out" ] && { echo "$out"; exit 0; }
  sleep 0.5
done
exit 1`, payload, addr, port)
	p := nt.createWith(t, rt, oneoff.Spec{App: app, Cmd: []string{"sh", "-c", script}, Logs: true}, what)
	ctx := context.Background()
	proc, err := rt.Start(ctx, p.ID, oneoff.StartOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	e := waitExit(t, proc.Exit, time.Minute)
	stdout, stderr := logLines(t, rt, p.ID)
	out := strings.Join(append(stdout, stderr...), "\n")
	t.Logf("%s on %s -> %s:%d: exit %d, %q", app, p.Node, addr, port, e.Code, out)
	return out, e.Err == nil && e.Code == 0 && slices.Contains(stdout, strconv.Itoa(payload))
}

// logLines reads a one-off's whole log, as cluster.logLines, which reads
// nothing of its cluster.
func logLines(t *testing.T, rt *swarm.Runtime, id string) (stdout, stderr []string) {
	t.Helper()
	var c cluster
	return c.logLines(t, rt, id)
}

// task returns the task of a one-off's service.
func (nt *netTest) task(t *testing.T, id string) dswarm.Task {
	t.Helper()
	tasks, err := nt.s.Manager().Client(t).TaskList(context.Background(), dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id))})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("tasks of %s: %v, %v", id, tasks, err)
	}
	return tasks[0]
}

// serviceName returns the name of a one-off's service.
func (nt *netTest) serviceName(t *testing.T, id string) string {
	t.Helper()
	svc, _, err := nt.s.Manager().Client(t).ServiceInspectWithRaw(context.Background(), id, dswarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.Name
}

// overlayIP returns the address of a one-off on its app's network.
func (nt *netTest) overlayIP(t *testing.T, id, app string) string {
	t.Helper()
	name, _ := docker.NetworkNames(nt.instance, app)
	task := nt.task(t, id)
	for _, a := range task.NetworksAttachments {
		if a.Network.Spec.Name == name && len(a.Addresses) > 0 {
			ip, _, _ := strings.Cut(a.Addresses[0], "/")
			return ip
		}
	}
	t.Fatalf("the task of %s is not on network %s: %+v", id, name, task.NetworksAttachments)
	return ""
}

// container returns the ID of a one-off's container.
func (nt *netTest) container(t *testing.T, id string) string {
	t.Helper()
	task := nt.task(t, id)
	if task.Status.ContainerStatus == nil {
		t.Fatalf("the task of %s has no container", id)
	}
	return task.Status.ContainerStatus.ContainerID
}

// gatewayIP returns the address of a one-off on its node's docker_gwbridge.
func (nt *netTest) gatewayIP(t *testing.T, n *testenv.SwarmNode, id string) string {
	t.Helper()
	cid := nt.container(t, id)
	nw, err := n.TCPClient(t).NetworkInspect(context.Background(), "docker_gwbridge", network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep, ok := nw.Containers[cid]
	if !ok {
		t.Fatalf("container %s is not on %s's docker_gwbridge: %+v", cid, n.Name, nw.Containers)
	}
	ip, _, _ := strings.Cut(ep.IPv4Address, "/")
	return ip
}

// bridgeIP returns the address of a one-off on its node's default bridge.
func (nt *netTest) bridgeIP(t *testing.T, n *testenv.SwarmNode, id string) string {
	t.Helper()
	info, err := n.TCPClient(t).ContainerInspect(context.Background(), nt.container(t, id))
	if err != nil {
		t.Fatal(err)
	}
	ep := info.NetworkSettings.Networks["bridge"]
	if ep == nil || ep.IPAddress == "" {
		t.Fatalf("container not on the default bridge: %+v", info.NetworkSettings.Networks)
	}
	return ep.IPAddress
}

// hostListener listens on the root namespace's address on the swarm's
// network and answers as a listener one-off does, until the test ends.
func (nt *netTest) hostListener(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(nt.s.Network.HostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	}()
	return nt.s.Network.HostIP, l.Addr().(*net.TCPAddr).Port
}

// networks lists the apps whose networks of the test's instance the
// manager has.
func (nt *netTest) networks(t *testing.T) []string {
	t.Helper()
	list, err := nt.s.Manager().Client(t).NetworkList(context.Background(), network.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+nt.instance))})
	if err != nil {
		t.Fatal(err)
	}
	var apps []string
	for _, n := range list {
		apps = append(apps, n.Labels[oneoff.LabelApp])
	}
	sort.Strings(apps)
	return apps
}

// nodeNetworks lists the test instance's app networks that a node's engine
// still has, as "node: network".
func (nt *netTest) nodeNetworks(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range nt.s.Nodes {
		list, err := n.TCPClient(t).NetworkList(context.Background(), network.ListOptions{})
		if err != nil {
			t.Fatalf("networks of %s: %v", n.Name, err)
		}
		for _, nw := range list {
			if strings.HasPrefix(nw.Name, "oneoffd-") {
				out = append(out, n.Name+": "+nw.Name)
			}
		}
	}
	return out
}

// containers lists the test instance's containers on every node.
func (nt *netTest) containers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range nt.s.Nodes {
		list, err := n.TCPClient(t).ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", "oneoffd.test="+nt.instance))})
		if err != nil {
			t.Fatalf("containers of %s: %v", n.Name, err)
		}
		for _, c := range list {
			out = append(out, n.Name+": "+c.ID[:12]+" "+c.State)
		}
	}
	return out
}

// logTimings logs the Creates' durations, by kind.
func (nt *netTest) logTimings(t *testing.T) {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	var kinds []string
	for k, d := range nt.timings {
		if len(d) > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		var s []string
		for _, d := range nt.timings[k] {
			s = append(s, d.Round(time.Millisecond).String())
		}
		t.Logf("%s → running: %s", k, strings.Join(s, " "))
	}
}
