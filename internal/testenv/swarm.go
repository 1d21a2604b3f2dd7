package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// swarmReadyTimeout bounds the wait for a swarm's nodes to be ready.
const swarmReadyTimeout = 60 * time.Second

// swarmPort is where a swarm's nodes listen for each other, as Docker's own
// default.
const swarmPort = "2377"

// SwarmOptions say how to start a test swarm.
type SwarmOptions struct {
	// Nodes is how many nodes the swarm has, 3 when zero: node 0 is its
	// manager, the others are workers.
	Nodes int
	// HeartbeatPeriod is how often nodes report to the manager, which
	// marks a node down when it misses a few; zero keeps Docker's 5s
	// (a killed node is down after some 11-14s here, after some 2s with
	// 1s).
	HeartbeatPeriod time.Duration
	// RegistryAuth makes the swarm's registry ask for credentials
	// (Registry.AuthConfig), which a service then passes on for its nodes
	// to pull with.
	RegistryAuth bool
}

// Swarm is a Docker Swarm of test engines on a Network of its own, each
// engine in a namespace of its own: the nodes reach each other and the root
// namespace, nothing else. Every node also listens on TCP with mutual TLS;
// all the nodes' server certificates come from one CA of the swarm, and
// they all accept the one client certificate in TLS. The nodes pull their
// images from a Registry of the swarm, on the Network's HostIP. Everything
// is stopped and removed when the test ends; the machine's engine is only
// read from, for the images.
type Swarm struct {
	// Network is the swarm's network.
	Network *Network
	// Nodes are the swarm's nodes; Nodes[0] is the manager.
	Nodes []*SwarmNode
	// TLS holds the client certificate every node accepts on its TCPHost,
	// with the CA that signed their server certificates; TLS.Dir holds
	// them as DOCKER_CERT_PATH wants.
	TLS EngineTLS
	// Registry is where the nodes pull images from.
	Registry *Registry
	// Image is the test image (Image) in Registry, for services.
	Image string

	tb     testing.TB
	ca     *certAuthority
	pushMu sync.Mutex
}

// SwarmNode is a node of a test Swarm: its engine, and what the swarm
// calls it.
type SwarmNode struct {
	// Engine is the node's engine: its Host (unix socket), TCPHost (mutual
	// TLS with the swarm's client certificate), IP, Hostname, Client and
	// TCPClient.
	*Engine
	// ID is the node's ID in the swarm.
	ID string
	// Name is the node's host name as the swarm reports it: the engine's
	// Hostname.
	Name string
	// Manager tells the manager from the workers.
	Manager bool
}

// StartSwarm starts a swarm of opts.Nodes test engines, node 0 its manager
// and the others workers joined with the worker token, starts its registry
// and pushes the test image there, and waits until every node is ready.
// It needs what StartEngine and StartRegistry need: without it the test is
// skipped on a laptop and fails in CI.
func StartSwarm(tb testing.TB, opts SwarmOptions) *Swarm {
	tb.Helper()
	needNetns(tb)
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 {
		tb.Fatalf("test swarm of %d nodes", opts.Nodes)
	}
	img := Image(tb)
	n := NewNetwork(tb)
	s := &Swarm{Network: n, tb: tb}
	var err error
	if s.ca, err = newCertAuthority(filepath.Join(n.Dir, "tls"), "oneoffd test swarm CA"); err != nil {
		tb.Fatalf("test swarm: CA: %v", err)
	}
	if s.TLS, err = s.ca.client(filepath.Join(n.Dir, "tls", "client"), "oneoffd"); err != nil {
		tb.Fatalf("test swarm: client certificate: %v", err)
	}
	s.Registry = startRegistry(tb, n.HostIP, opts.RegistryAuth, n)

	// Containers' DNS goes to the test network's root address, where
	// nothing answers on port 53: a lookup fails at once, and never falls
	// back to a public resolver.
	cfg := map[string]any{"insecure-registries": []string{s.Registry.Host()}, "dns": []string{n.HostIP}}
	for i := 0; i < opts.Nodes; i++ {
		e := StartEngine(tb, EngineOptions{
			Network: n, Node: i, Images: []string{}, TLS: true, Config: cfg, ca: s.ca, client: s.TLS,
		})
		s.Nodes = append(s.Nodes, &SwarmNode{Engine: e, Name: e.Hostname, Manager: i == 0})
	}
	// Registered after the engines' teardown, so run before it.
	tb.Cleanup(s.removeServices)

	ctx, cancel := context.WithTimeout(context.Background(), swarmReadyTimeout)
	defer cancel()
	if err := s.form(ctx, opts); err != nil {
		tb.Fatalf("test swarm: %v", err)
	}
	s.Image = s.Push(tb, img)
	if err := s.waitReady(ctx); err != nil {
		tb.Fatalf("test swarm: %v", err)
	}
	return s
}

// form makes node 0 the manager and joins the other nodes as workers.
func (s *Swarm) form(ctx context.Context, opts SwarmOptions) error {
	m := s.Nodes[0]
	mgr, err := engineClient(m.Host)
	if err != nil {
		return err
	}
	defer mgr.Close()
	spec := swarm.Spec{}
	if opts.HeartbeatPeriod > 0 {
		spec.Dispatcher.HeartbeatPeriod = opts.HeartbeatPeriod
	}
	id, err := mgr.SwarmInit(ctx, swarm.InitRequest{
		ListenAddr: "0.0.0.0:" + swarmPort, AdvertiseAddr: m.IP, Spec: spec,
	})
	if err != nil {
		return fmt.Errorf("init the swarm on %s: %w", m.Namespace, err)
	}
	m.ID = id
	info, err := mgr.SwarmInspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect the swarm: %w", err)
	}

	errs := make([]error, len(s.Nodes))
	var wg sync.WaitGroup
	for i, w := range s.Nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = w.join(ctx, m.IP, info.JoinTokens.Worker)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// join joins the node to the swarm of the manager at ip.
func (n *SwarmNode) join(ctx context.Context, ip, token string) error {
	cli, err := engineClient(n.Host)
	if err != nil {
		return err
	}
	defer cli.Close()
	err = cli.SwarmJoin(ctx, swarm.JoinRequest{
		ListenAddr: "0.0.0.0:" + swarmPort, AdvertiseAddr: n.IP, RemoteAddrs: []string{net.JoinHostPort(ip, swarmPort)}, JoinToken: token,
	})
	if err != nil {
		return fmt.Errorf("join %s to the swarm: %w", n.Namespace, err)
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", n.Namespace, err)
	}
	n.ID = info.Swarm.NodeID
	return nil
}

// waitReady waits until the manager sees every node ready, under the
// node's host name.
func (s *Swarm) waitReady(ctx context.Context) error {
	mgr, err := engineClient(s.Nodes[0].Host)
	if err != nil {
		return err
	}
	defer mgr.Close()
	for {
		nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
		ready := map[string]swarm.Node{}
		for _, n := range nodes {
			if n.Status.State == swarm.NodeStateReady {
				ready[n.ID] = n
			}
		}
		missing := ""
		for _, n := range s.Nodes {
			got, ok := ready[n.ID]
			if !ok {
				missing = n.Namespace
				break
			}
			n.Name = got.Description.Hostname
		}
		if err == nil && missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("node %s not ready", missing)
			}
			return fmt.Errorf("wait for the nodes to be ready: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Manager returns the swarm's manager node.
func (s *Swarm) Manager() *SwarmNode { return s.Nodes[0] }

// Env returns the environment Docker's own tools (and clients made
// FromEnv) reach the manager with: over TCP with the swarm's client
// certificate.
func (s *Swarm) Env() []string {
	return []string{"DOCKER_HOST=" + s.Manager().TCPHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + s.TLS.Dir}
}

// TLSClient returns a client for the TLS listener of the node at addr,
// with the swarm's client certificate, closed when the test ends. addr is
// an IP, as a swarm node's Status.Addr, an IP:PORT, or a tcp:// host.
func (s *Swarm) TLSClient(tb testing.TB, addr string) *client.Client {
	tb.Helper()
	host := strings.TrimPrefix(addr, "tcp://")
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, tlsPort)
	}
	return tlsClient(tb, "tcp://"+host, s.TLS)
}

// Push copies the image localRef from the machine's engine into the
// manager, pushes it from there to the swarm's registry as
// HOST/PATH:TAG, localRef's path and tag, and returns that reference. The
// manager keeps no tag of it, so that every node pulls it. It needs the
// manager up.
func (s *Swarm) Push(tb testing.TB, localRef string) string {
	tb.Helper()
	named, err := reference.ParseNormalizedNamed(localRef)
	if err != nil {
		tb.Fatalf("push %q: %v", localRef, err)
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	ref := fmt.Sprintf("%s/%s:%s", s.Registry.Host(), reference.Path(named), tag)

	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	m := s.Manager()
	m.load(tb, []string{localRef})
	cli := m.Client(tb)
	if err := s.Registry.push(cli, localRef, ref); err != nil {
		tb.Fatalf("test swarm: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryReadyTimeout)
	defer cancel()
	if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
		tb.Fatalf("test swarm: untag %s on %s: %v", ref, m.Namespace, err)
	}
	return ref
}

// KillNode kills node i's engine as a crash would (Engine.Kill); the swarm
// keeps its state in the engine's data root.
func (s *Swarm) KillNode(i int) {
	s.tb.Helper()
	s.Nodes[i].Kill()
}

// RestartNode starts node i's engine again, killing it first if it runs,
// and waits until it answers; it then rejoins the swarm by itself
// (WaitNodeState).
func (s *Swarm) RestartNode(i int) {
	s.tb.Helper()
	s.Nodes[i].Restart()
}

// WaitNodeState waits until the manager reports node i in state, such as
// swarm.NodeStateDown ("down") or swarm.NodeStateReady ("ready"), for at
// most timeout; it returns how long that took. It needs the manager up.
func (s *Swarm) WaitNodeState(i int, state swarm.NodeState, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	n := s.Nodes[i]
	mgr, err := engineClient(s.Manager().Host)
	if err != nil {
		return 0, err
	}
	defer mgr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got swarm.NodeState
	for {
		node, _, err := mgr.NodeInspectWithRaw(ctx, n.ID)
		if err == nil {
			got = node.Status.State
			if got == state {
				return time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("state %q", got)
			}
			return time.Since(start), fmt.Errorf("node %s not %s after %v: %w", n.Namespace, state, timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeServices removes every service of the swarm, when the manager
// still answers, before the engines are stopped.
func (s *Swarm) removeServices() {
	m := s.Manager()
	m.mu.Lock()
	up := m.proc != nil
	m.mu.Unlock()
	if !up {
		return
	}
	mgr, err := engineClient(m.Host)
	if err != nil {
		return
	}
	defer mgr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		s.tb.Logf("test swarm: list the services at teardown: %v", err)
		return
	}
	for _, svc := range services {
		if err := mgr.ServiceRemove(ctx, svc.ID); err != nil {
			s.tb.Logf("test swarm: remove service %s at teardown: %v", svc.Spec.Name, err)
		}
	}
}

// engineClient returns a client for host, which the caller closes.
func engineClient(host string) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", host, err)
	}
	return cli, nil
}
