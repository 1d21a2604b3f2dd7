package swarm

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// labelNode, on a swarm node, is the name the runtime gives it; without
// it, a node is named by its host name, made distinct by its ID when
// nodes share one.
const labelNode = "oneoffd.node"

// node is a swarm node whose engine the runtime talks to.
type node struct {
	id, name string
	cli      *client.Client
}

// nodeInfo is what the manager says of a node.
type nodeInfo struct {
	name, addr string
	state      swarm.NodeState
}

// nodeAddr is the address of a node's engine host.
func nodeAddr(n swarm.Node) string {
	addr := n.Status.Addr
	if (addr == "" || addr == "0.0.0.0") && n.ManagerStatus != nil {
		// A manager's own status may say 0.0.0.0: its manager address
		// is the one the others reach it on.
		if h, _, err := net.SplitHostPort(n.ManagerStatus.Addr); err == nil {
			addr = h
		}
	}
	return addr
}

// nodeNames names the nodes for operators: by their oneoffd.node label,
// else by host name, with a short ID after a host name that several share
// (as engines on one machine do).
func nodeNames(nodes []swarm.Node) map[string]nodeInfo {
	hosts := map[string]int{}
	for _, n := range nodes {
		hosts[n.Description.Hostname]++
	}
	out := make(map[string]nodeInfo, len(nodes))
	for _, n := range nodes {
		name := n.Spec.Labels[labelNode]
		if name == "" {
			name = n.Description.Hostname
			if hosts[name] > 1 || name == "" {
				id := n.ID
				if len(id) > 6 {
					id = id[:6]
				}
				name = strings.TrimSuffix(name+"-"+id, "-")
				name = strings.TrimPrefix(name, "-")
			}
		}
		out[n.ID] = nodeInfo{name: name, addr: nodeAddr(n), state: n.Status.State}
	}
	return out
}

// refreshNodes reads the nodes from the manager.
func (r *Runtime) refreshNodes(ctx context.Context) (map[string]nodeInfo, error) {
	nodes, err := r.mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, r.wrapManager("list nodes", err)
	}
	names := nodeNames(nodes)
	r.mu.Lock()
	r.names = names
	r.mu.Unlock()
	return names, nil
}

// node returns the node of an ID, with a client for its engine.
func (r *Runtime) node(ctx context.Context, id string) (*node, error) {
	r.mu.Lock()
	n := r.nodes[id]
	info, known := r.names[id]
	r.mu.Unlock()
	if n != nil {
		return n, nil
	}
	if !known || info.addr == "" {
		names, err := r.refreshNodes(ctx)
		if err != nil {
			return nil, err
		}
		if info, known = names[id]; !known {
			return nil, &errdefs.Error{Class: errdefs.ErrUnavailable, Code: oneoff.CodeNodeLost,
				Message: fmt.Sprintf("node %s is no longer in the swarm", id)}
		}
	}
	host := "tcp://" + net.JoinHostPort(info.addr, strconv.Itoa(r.opts.NodePort))
	opts := []client.Opt{client.WithHost(host), client.WithAPIVersionNegotiation()}
	if r.opts.TLS.Cert != "" {
		opts = append(opts, client.WithTLSClientConfig(r.opts.TLS.CACert, r.opts.TLS.Cert, r.opts.TLS.Key))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("client for node %s: %w", info.name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[id]; n != nil {
		cli.Close()
		return n, nil
	}
	n = &node{id: id, name: info.name, cli: cli}
	r.nodes[id] = n
	return n, nil
}

// nodeLostError says a one-off's node was lost.
func nodeLostError(name string, state swarm.NodeState) error {
	how := "left the swarm"
	if state != "" {
		how = "is " + string(state)
	}
	return &errdefs.Error{Class: errdefs.ErrUnavailable, Code: oneoff.CodeNodeLost,
		Message: fmt.Sprintf("node %s was lost (the swarm says it %s): the one-off ended with it", name, how)}
}

// lost reports whether a node in state s has been given up by the swarm.
func lost(s swarm.NodeState) bool {
	return s == swarm.NodeStateDown || s == swarm.NodeStateDisconnected
}

// monitor reads the nodes' states while one-offs run on them, and tells
// each one-off's watcher when its node is lost.
type monitor struct {
	r *Runtime

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	running  bool
	done     chan struct{}
	closed   bool
}

// watcher is one one-off's watch of its node.
type watcher struct {
	node string // ID
	lost chan error
}

func newMonitor(r *Runtime) *monitor {
	return &monitor{r: r, watchers: map[*watcher]struct{}{}, done: make(chan struct{})}
}

// watch starts watching a node: the channel yields a node_lost error once
// the swarm gives it up. stop ends the watch.
func (m *monitor) watch(nodeID string) (lost <-chan error, stop func()) {
	w := &watcher{node: nodeID, lost: make(chan error, 1)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return w.lost, func() {}
	}
	m.watchers[w] = struct{}{}
	if !m.running {
		m.running = true
		go m.run()
	}
	return w.lost, func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
	}
}

// run polls the nodes while anything is watched.
func (m *monitor) run() {
	t := time.NewTicker(m.r.opts.NodePoll)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		m.mu.Lock()
		if len(m.watchers) == 0 {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), m.r.opts.NodePoll*2)
		names, err := m.r.refreshNodes(ctx)
		cancel()
		if err != nil {
			continue // the manager does not answer: nothing is known of the nodes
		}
		m.mu.Lock()
		for w := range m.watchers {
			info, ok := names[w.node]
			if ok && !lost(info.state) {
				continue
			}
			name := info.name
			if !ok {
				name = w.node
			}
			w.lost <- nodeLostError(name, info.state)
			delete(m.watchers, w)
		}
		m.mu.Unlock()
	}
}

// close stops the polling.
func (m *monitor) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
}

// nodeState returns the manager's view of a node, read afresh.
func (r *Runtime) nodeState(ctx context.Context, id string) (swarm.NodeState, bool) {
	n, _, err := r.mgr.NodeInspectWithRaw(ctx, id)
	if err != nil {
		return "", false
	}
	return n.Status.State, true
}
