// Package swarm runs one-off containers on a Docker Swarm cluster: Swarm
// places each one-off, as a service of one task, on a node with room for
// its size, and the data path (terminal, files, logs, exit) goes to the
// engine of that node, over mutual TLS, since Swarm's API has neither
// attach nor exec.
//
// A one-off's service runs a small holder shell at once (a service has no
// create-then-start): a detached command replaces the holder when Start
// releases it, so that it is the container's own process; an attached one
// runs as an exec in the container, attached before it starts. The image
// must have /bin/sh.
//
// Each app's one-offs are on an overlay network of the app's own (see
// Options.Isolation), as runtime/docker puts them on a bridge each.
//
// Most of an attached one-off's wait is Swarm's: scheduling the service,
// and the node creating and starting its container. With Options.Warm, the
// runtime keeps that many holders running ahead of use for each app, image
// and size that attached one-offs asked for in the last Options.WarmIdle:
// an attached one-off then takes one (its service gets the one-off's
// labels, which leaves the task running) and its command starts as an exec
// at once, while a new holder is started in the background. The trade-off:
// each warm holder reserves its size on a node, as a running one-off does,
// whether or not anyone comes; at most Warm holders per key are idle, and
// a key unused for WarmIdle has its holders removed. A holder runs its
// image as its node pulled it when it started, and is replaced once
// WarmIdle old, so that a tag pushed again is taken up. Detached one-offs
// never take a holder: their command must be the container's own process,
// with its log.
package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

var _ oneoff.Runtime = (*Runtime)(nil)

// Defaults of Options.
const (
	// DefaultNodePort is where nodes' engines listen with TLS.
	DefaultNodePort = 2376
	// DefaultPlaceTimeout bounds how long Create waits for Swarm to run
	// a one-off's task.
	DefaultPlaceTimeout = 30 * time.Second
	// DefaultPullTimeout bounds how long a placed one-off's node may take
	// to pull its image.
	DefaultPullTimeout = 10 * time.Minute
	// DefaultNodePoll is how often the nodes' states are read while
	// one-offs run on them.
	DefaultNodePoll = 2 * time.Second
)

// labelInstance marks the services and containers this runtime made, with
// Options.Instance as its value, so that Prune finds them on every node.
const labelInstance = "oneoffd.swarm.instance"

// TLS names the files of mutual TLS with the engines: the CA that signed
// their certificates, and the client certificate and key they accept.
type TLS struct {
	CACert, Cert, Key string
}

// Options say how to reach a swarm and how to run one-offs on it.
type Options struct {
	// Manager is the engine host of a swarm manager, e.g.
	// tcp://10.0.0.1:2376 or unix:///var/run/docker.sock; empty, where
	// DOCKER_HOST and the other DOCKER_* variables say.
	Manager string
	// TLS is for the manager, when reached over TCP, and for the nodes.
	TLS TLS
	// NodePort is where the nodes' engines listen with TLS;
	// DefaultNodePort when 0.
	NodePort int
	// PlaceTimeout bounds how long Create waits for the one-off's task to
	// run; DefaultPlaceTimeout when 0.
	PlaceTimeout time.Duration
	// Placement are placement constraints for every one-off's task, such
	// as node.role==worker.
	Placement []string
	// PullTimeout bounds how long a placed task may take to pull its
	// image and start, past PlaceTimeout; DefaultPullTimeout when 0.
	PullTimeout time.Duration
	// NodePoll is how often nodes are checked while one-offs run on
	// them; DefaultNodePoll when 0.
	NodePoll time.Duration
	// Instance tells this daemon's services from others' on a shared
	// swarm; it must survive restarts.
	Instance string
	// Isolation is applied as far as a service's spec allows: the
	// capabilities, no-new-privileges (on engines of API 1.46 or later),
	// an overlay network per app. Disk quotas are not applied.
	Isolation docker.Isolation
	// Warm is how many holders to keep ready for each app, image and size
	// of attached one-offs (see the package doc); 0 keeps none.
	Warm int
	// WarmIdle is how long the holders of an app, image and size that no
	// one-off asks for are kept; DefaultWarmIdle when 0.
	WarmIdle time.Duration
	// Logger is where the runtime says what it finds on its own; nil
	// discards.
	Logger *slog.Logger
}

// Runtime is a oneoff.Runtime backed by a Docker Swarm cluster.
type Runtime struct {
	opts Options
	mgr  *client.Client
	reg  *docker.Runtime // the manager, for registry checks and credentials
	log  *slog.Logger

	mu    sync.Mutex
	nodes map[string]*node    // by node ID
	ones  map[string]*oneOff  // by service ID
	names map[string]nodeInfo // what the manager said of each node, by ID
	nets  appNets             // the app networks, by app

	mon  *monitor
	pool *pool // nil without Options.Warm
}

// New returns a runtime for the swarm whose manager opts name. It does not
// contact the manager: Ping does.
func New(opts Options) (*Runtime, error) {
	if opts.NodePort == 0 {
		opts.NodePort = DefaultNodePort
	}
	if opts.PlaceTimeout <= 0 {
		opts.PlaceTimeout = DefaultPlaceTimeout
	}
	if opts.NodePoll <= 0 {
		opts.NodePoll = DefaultNodePoll
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = DefaultPullTimeout
	}
	if opts.WarmIdle <= 0 {
		opts.WarmIdle = DefaultWarmIdle
	}
	opts.Placement = slices.Clone(opts.Placement)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Isolation.Capabilities = slices.Clone(opts.Isolation.Capabilities)
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Manager != "" {
		copts = append(copts, client.WithHost(opts.Manager))
		if strings.HasPrefix(opts.Manager, "tcp://") && opts.TLS.Cert != "" {
			copts = append(copts, client.WithTLSClientConfig(opts.TLS.CACert, opts.TLS.Cert, opts.TLS.Key))
		}
	}
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, fmt.Errorf("swarm manager client: %w", err)
	}
	r := &Runtime{opts: opts, mgr: cli, reg: docker.NewWithClient(cli), log: opts.Logger,
		nodes: map[string]*node{}, ones: map[string]*oneOff{}, names: map[string]nodeInfo{}}
	r.mon = newMonitor(r)
	r.pool = newPool(r)
	return r, nil
}

// Client returns the manager's client.
func (r *Runtime) Client() *client.Client { return r.mgr }

// SetRegistryAuth sets the credentials the nodes are given to pull from
// each registry, keyed as in a docker config.json (see
// docker.Runtime.SetRegistryAuth).
func (r *Runtime) SetRegistryAuth(auths map[string]registry.AuthConfig) { r.reg.SetRegistryAuth(auths) }

// Ping checks that the manager answers and manages a swarm.
func (r *Runtime) Ping(ctx context.Context) error {
	info, err := r.mgr.Info(ctx)
	if err != nil {
		return r.wrapManager("ping swarm manager", err)
	}
	if !info.Swarm.ControlAvailable {
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, nil,
			"the engine at %s is not a swarm manager (swarm state %q): point the daemon at a manager's engine", r.mgr.DaemonHost(), info.Swarm.LocalNodeState)
	}
	return nil
}

// Close removes the warm holders, stops watching nodes and releases the
// connections to the manager and the nodes.
func (r *Runtime) Close() error {
	r.pool.close()
	r.mon.close()
	r.mu.Lock()
	nodes := r.nodes
	r.nodes = map[string]*node{}
	r.mu.Unlock()
	for _, n := range nodes {
		n.cli.Close()
	}
	return r.mgr.Close()
}

// Create makes a service of one task for spec, whose container Swarm
// places on a node with room for spec.Limits, and waits until it runs the
// holder: nothing of spec.Cmd runs yet.
//
// With Options.Warm, an attached one-off takes a warm holder of its app,
// image and size when one is ready: it is at once where that holder runs.
func (r *Runtime) Create(ctx context.Context, spec oneoff.Spec) (oneoff.Placement, error) {
	if o := r.pool.claim(ctx, spec); o != nil {
		return oneoff.Placement{ID: o.service, Node: o.node.name}, nil
	}
	o, err := r.startService(ctx, spec)
	if err != nil {
		return oneoff.Placement{}, err
	}
	return oneoff.Placement{ID: o.service, Node: o.node.name}, nil
}

// startService makes the service of spec and waits until its task runs;
// a service not placed is removed.
func (r *Runtime) startService(ctx context.Context, spec oneoff.Spec) (*oneOff, error) {
	auth, err := r.reg.EncodedRegistryAuth(spec.Image)
	if err != nil {
		return nil, err
	}
	resp, err := r.createService(ctx, spec, auth)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return nil, &errdefs.Error{Class: errdefs.ErrConflict, Code: "name_taken", Err: err,
				Message: fmt.Sprintf("a service named %q is already on the swarm", serviceName(spec.Name))}
		}
		return nil, r.wrapManager("create service", err)
	}
	o, err := r.place(ctx, resp.ID, spec)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := r.mgr.ServiceRemove(rctx, resp.ID); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			r.log.Warn("remove the service of a one-off that was not placed", "service", resp.ID, "err", rerr)
		}
		return nil, err
	}
	return o, nil
}

// serviceSpec is the service that runs spec's one-off.
func (r *Runtime) serviceSpec(spec oneoff.Spec) swarm.ServiceSpec {
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[labelInstance] = r.opts.Instance
	init := true
	iso := r.opts.Isolation
	cs := &swarm.ContainerSpec{
		Image:   spec.Image,
		Labels:  labels,
		Command: holderCommand,
		Args:    spec.Cmd,
		Env:     spec.Env,
		TTY:     spec.TTY,
		// An init process reaps zombies and forwards signals, as with
		// runtime/docker.
		Init:           &init,
		CapabilityDrop: []string{"ALL"},
		CapabilityAdd:  slices.Clone(iso.Capabilities),
	}
	if iso.NoNewPrivileges {
		// Read by engines of API 1.46 and later; older ones ignore it.
		cs.Privileges = &swarm.Privileges{NoNewPrivileges: true}
	}
	res := &swarm.ResourceRequirements{Limits: &swarm.Limit{}, Reservations: &swarm.Resources{}}
	if l := spec.Limits; l.Memory > 0 {
		res.Limits.MemoryBytes, res.Reservations.MemoryBytes = l.Memory, l.Memory
	}
	if l := spec.Limits; l.CPUs > 0 {
		n := int64(l.CPUs * 1e9)
		res.Limits.NanoCPUs, res.Reservations.NanoCPUs = n, n
	}
	if l := spec.Limits; l.Pids > 0 {
		res.Limits.Pids = l.Pids
	}
	logs := &swarm.Driver{Name: "none"}
	if spec.Logs {
		// As runtime/docker: compact, readable, and sized here.
		logs = &swarm.Driver{Name: "local", Options: map[string]string{"max-size": "100m", "max-file": "3"}}
	}
	one := uint64(1)
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: serviceName(spec.Name), Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     res,
			// A one-off runs once: its task is never replaced, and
			// stays, with its container, until the service is removed.
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			LogDriver:     logs,
			Placement:     &swarm.Placement{Constraints: slices.Clone(r.opts.Placement)},
			Networks:      r.appNetworks(spec),
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: r.endpointSpec(spec),
	}
}

// place waits until the service's task runs, and learns where: for
// PlaceTimeout while Swarm looks for a node, then for PullTimeout more
// while the node pulls the image and starts the container.
func (r *Runtime) place(ctx context.Context, service string, spec oneoff.Spec) (*oneOff, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.AfterFunc(r.opts.PlaceTimeout, func() { cancel(context.DeadlineExceeded) })
	defer deadline.Stop()
	placed := false
	start := time.Now()
	pause := 10 * time.Millisecond
	var last swarm.Task
	checkedFit := false
	var started <-chan swarm.Task // the node's word that the container started
	for {
		t, ok, err := r.task(ctx, service)
		if err != nil && ctx.Err() == nil {
			return nil, err
		}
		if ok {
			last = t
			if started == nil && t.NodeID != "" {
				started = r.watchStart(ctx, t)
			}
			switch t.Status.State {
			case swarm.TaskStateRunning:
				return r.adopt(ctx, service, t, spec.Cmd, nil, true)
			case swarm.TaskStateRejected, swarm.TaskStateFailed, swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateOrphaned, swarm.TaskStateRemove:
				return nil, taskFailed(spec, t)
			case swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePreparing, swarm.TaskStateReady, swarm.TaskStateStarting:
				if !placed {
					// On a node: its pull has its own, longer bound.
					placed = true
					deadline.Reset(r.opts.PullTimeout)
				}
			case swarm.TaskStatePending:
				if !checkedFit && unplaceable(t.Status.Err) {
					checkedFit = true
					if err := r.fitsSomewhere(ctx, spec, t.Status.Err); err != nil {
						return nil, err
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, r.placeTimeout(spec, last, time.Since(start), ctx)
		case t := <-started:
			return r.adopt(ctx, service, t, spec.Cmd, nil, true)
		case <-time.After(pause):
		}
		if pause < 200*time.Millisecond {
			pause *= 2
		}
	}
}

// watchStart yields the task, with its container, once the engine of the
// node it was assigned to says the container started: some 30 ms before the
// manager hears of it, and without waiting for the next poll. The events
// are read from the task's creation on, so that a start before the
// subscription is not missed; when the node cannot be asked, nothing comes
// and the polls decide.
func (r *Runtime) watchStart(ctx context.Context, t swarm.Task) <-chan swarm.Task {
	out := make(chan swarm.Task, 1)
	go func() {
		n, err := r.node(ctx, t.NodeID)
		if err != nil {
			return
		}
		since := t.CreatedAt
		if since.IsZero() {
			since = time.Now()
		}
		// A node's clock may be behind the manager's.
		since = since.Add(-10 * time.Second)
		msgs, errs := n.cli.Events(ctx, events.ListOptions{
			Since: strconv.FormatInt(since.Unix(), 10),
			Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)),
				filters.Arg("event", string(events.ActionStart)), filters.Arg("label", labelTask+"="+t.ID)),
		})
		select {
		case m := <-msgs:
			t.Status.State = swarm.TaskStateRunning
			t.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: m.Actor.ID}
			out <- t
		case <-errs:
		case <-ctx.Done():
		}
	}()
	return out
}

// task returns the service's newest task, if it has one.
func (r *Runtime) task(ctx context.Context, service string) (swarm.Task, bool, error) {
	tasks, err := r.mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service))})
	if err != nil {
		return swarm.Task{}, false, r.wrapManager("list tasks", err)
	}
	if len(tasks) == 0 {
		return swarm.Task{}, false, nil
	}
	newest := tasks[0]
	for _, t := range tasks[1:] {
		if t.CreatedAt.After(newest.CreatedAt) {
			newest = t
		}
	}
	return newest, true, nil
}

// unplaceable reports whether a pending task's error says no node can take
// it.
func unplaceable(msg string) bool {
	return strings.Contains(msg, "no suitable node") || strings.Contains(msg, "insufficient resources")
}

// noNodeFits is the code of a one-off that no node can run.
const noNodeFits = "no_node_fits"

// fitsSomewhere returns an error when spec's size is larger than every
// ready node: it would never be placed.
func (r *Runtime) fitsSomewhere(ctx context.Context, spec oneoff.Spec, said string) error {
	nodes, err := r.mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil // not known: wait and see
	}
	cpus, mem := int64(spec.Limits.CPUs*1e9), spec.Limits.Memory
	var maxCPU, maxMem int64
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive {
			continue
		}
		res := n.Description.Resources
		if res.NanoCPUs >= cpus && res.MemoryBytes >= mem {
			return nil
		}
		maxCPU, maxMem = max(maxCPU, res.NanoCPUs), max(maxMem, res.MemoryBytes)
	}
	return &errdefs.Error{Class: errdefs.ErrInvalid, Code: noNodeFits,
		Message: fmt.Sprintf("no node of the swarm is large enough for %s (the largest has %s): pick a smaller size, or add larger nodes; the swarm said %q",
			sizeOf(spec.Limits.Name, cpus, mem), sizeText(maxCPU, maxMem), said)}
}

// placeTimeout is the error of a task that did not run within the bound.
func (r *Runtime) placeTimeout(spec oneoff.Spec, t swarm.Task, took time.Duration, ctx context.Context) error {
	took = took.Round(100 * time.Millisecond)
	if cause := context.Cause(ctx); cause != nil && cause != context.DeadlineExceeded {
		return fmt.Errorf("place one-off: %w", cause)
	}
	if t.Status.State == swarm.TaskStatePending && unplaceable(t.Status.Err) {
		return &errdefs.Error{Class: errdefs.ErrUnavailable, Code: noNodeFits,
			Message: fmt.Sprintf("no node of the swarm had room for %s within %s: try again once other one-offs have ended, or pick a smaller size; the swarm said %q",
				sizeOf(spec.Limits.Name, int64(spec.Limits.CPUs*1e9), spec.Limits.Memory), took, t.Status.Err)}
	}
	state := string(t.Status.State)
	if state == "" {
		state = "not yet scheduled"
	}
	msg := t.Status.Err
	if msg == "" {
		msg = t.Status.Message
	}
	return &errdefs.Error{Class: errdefs.ErrUnavailable, Code: "place_timeout",
		Message: fmt.Sprintf("the swarm did not run the one-off within %s (its task is %s: %s): check the nodes (docker node ls) and that they can pull %s",
			took, state, msg, spec.Image)}
}

// taskFailed is the error of a task that ended before it ran.
func taskFailed(spec oneoff.Spec, t swarm.Task) error {
	said := t.Status.Err
	if said == "" {
		said = t.Status.Message
	}
	lower := strings.ToLower(said)
	switch {
	case strings.Contains(lower, "/bin/sh") && (strings.Contains(lower, "no such file") || strings.Contains(lower, "not found")):
		return &errdefs.Error{Class: errdefs.ErrInvalid, Code: "image_without_shell",
			Message: fmt.Sprintf("image %s has no /bin/sh, which one-offs on a swarm need (a small holder shell waits in the container for the command): build the image on a base with a shell; the node said %q", spec.Image, said)}
	case strings.Contains(lower, "network") && strings.Contains(lower, "not found"):
		return fmt.Errorf("start the one-off's task: its app network went away: retry; the node said %q", said)
	case strings.Contains(lower, "no such image"), strings.Contains(lower, "pull access denied"),
		strings.Contains(lower, "manifest unknown"), strings.Contains(lower, "not found"),
		strings.Contains(lower, "repository does not exist"):
		return &errdefs.Error{Class: errdefs.ErrNotFound, Code: "image_not_found",
			// A node's agent says "No such image" of a pull its registry
			// refused for want of credentials, too.
			Message: fmt.Sprintf("the node could not get image %s: push it where the nodes can pull it, and give the daemon the registry's credentials if it wants them (--registry-config); the node said %q", spec.Image, said)}
	case strings.Contains(lower, "unauthorized"), strings.Contains(lower, "authentication required"), strings.Contains(lower, "denied"):
		return &errdefs.Error{Class: errdefs.ErrInvalid, Code: "registry_unauthorized",
			Message: fmt.Sprintf("the registry refused to let the node pull %s: fix the daemon's registry config (--registry-config); the node said %q", spec.Image, said)}
	}
	return fmt.Errorf("start the one-off's task: it is %s: %s", t.Status.State, said)
}

// sizeText says a size for a person.
func sizeText(nanoCPUs, mem int64) string {
	var parts []string
	if nanoCPUs > 0 {
		parts = append(parts, strconv.FormatFloat(float64(nanoCPUs)/1e9, 'f', -1, 64)+" CPU")
	}
	if mem > 0 {
		parts = append(parts, humanize.IBytes(uint64(mem)))
	}
	if len(parts) == 0 {
		return "no reservation"
	}
	return strings.Join(parts, ", ")
}

// sizeOf says what a size named name asks for: "size huge (1 CPU, 1.0 TiB)".
func sizeOf(name string, nanoCPUs, mem int64) string {
	if name == "" {
		return sizeText(nanoCPUs, mem)
	}
	return fmt.Sprintf("size %s (%s)", name, sizeText(nanoCPUs, mem))
}

// wrapManager turns a manager's error into an error with a class the API
// can map.
func (r *Runtime) wrapManager(op string, err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the swarm manager's engine at %s does not answer: check that it runs (docker info) and that the daemon's --swarm-manager points to it", r.mgr.DaemonHost())
	case docker.EngineWentAway(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the swarm manager's engine at %s went away: check that it runs (docker info)", r.mgr.DaemonHost())
	case cerrdefs.IsNotFound(err):
		return &errdefs.Error{Class: errdefs.ErrNotFound, Code: "container_not_found", Message: op + ": no such one-off on the swarm", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// wrapNode turns a node engine's error into an error with a class the API
// can map.
func wrapNode(n *node, op string, err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the engine of node %s at %s does not answer: check that it runs and listens with TLS", n.name, n.cli.DaemonHost())
	case docker.EngineWentAway(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the engine of node %s at %s went away", n.name, n.cli.DaemonHost())
	case cerrdefs.IsNotFound(err):
		return &errdefs.Error{Class: errdefs.ErrNotFound, Code: "container_not_found", Message: op + ": no such container on node " + n.name, Err: err}
	}
	return fmt.Errorf("%s on node %s: %w", op, n.name, err)
}
