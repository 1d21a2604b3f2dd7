// Package docker runs one-off containers on a Docker Engine. It speaks the
// engine's API through the official client, negotiating the API version so
// that engines as old as API 1.41 work.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

var _ oneoff.Runtime = (*Runtime)(nil)

// detachKeys replaces the engine's default detach sequence (Ctrl-P Ctrl-Q),
// which would swallow a shell user's Ctrl-P, and which cannot be turned off.
// Bytes 0xFF 0xFE never occur in UTF-8 text, so no user types them.
const detachKeys = "\xff,\xfe"

// Runtime is a oneoff.Runtime backed by a Docker Engine.
type Runtime struct {
	cli *client.Client

	authMu sync.Mutex
	auths  map[string]registry.AuthConfig // by registry host, see registryHost

	met *engineMetrics // nil until Instrument
	log *slog.Logger   // nil until SetLogger

	iso     Isolation
	probeMu sync.Mutex // one probe at a time
	quotaMu sync.Mutex // guards quota
	quota   quotaState
	netMu   sync.Mutex
	nets    map[string]*appNetwork // by app
	nodeMu  sync.Mutex
	node    string // the engine's host name, once known
}

// New connects to the engine at host, or where DOCKER_HOST and the
// other DOCKER_* variables say when host is empty. Its containers get the
// default isolation until SetIsolation.
func New(host string) (*Runtime, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Runtime{cli: cli, iso: DefaultIsolation("")}, nil
}

// SetIsolation sets how containers are isolated; call it before the first
// Create.
func (d *Runtime) SetIsolation(iso Isolation) {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	iso.Capabilities = slices.Clone(iso.Capabilities)
	d.iso, d.quota = iso, quotaState{}
}

// Isolation reports the isolation in force, and what the engine said of
// disk quotas.
func (d *Runtime) Isolation() IsolationReport {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	r := IsolationReport{Isolation: d.iso, StorageDriver: d.quota.driver,
		DiskQuotaProbed: d.quota.probed, DiskQuotaSupported: d.quota.supported}
	r.Capabilities = slices.Clone(r.Capabilities)
	return r
}

// SetLogger is where the runtime says what it finds out on its own: a
// storage driver without quotas, a network pruned.
func (d *Runtime) SetLogger(log *slog.Logger) { d.log = log }

// Client returns the underlying engine client.
func (d *Runtime) Client() *client.Client { return d.cli }

// Close releases the client's connections.
func (d *Runtime) Close() error { return d.cli.Close() }

// Ping checks that the engine answers.
func (d *Runtime) Ping(ctx context.Context) error {
	defer d.timed("ping")()
	if _, err := d.cli.Ping(ctx); err != nil {
		return d.wrap("ping engine", err)
	}
	return nil
}

// Create makes a container from spec without starting it, isolated as
// configured: on its app's network, created if need be. Its node is the
// engine's host.
func (d *Runtime) Create(ctx context.Context, spec oneoff.Spec) (oneoff.Placement, error) {
	id, err := d.create(ctx, spec)
	if err != nil {
		return oneoff.Placement{}, err
	}
	return oneoff.Placement{ID: id, Node: d.Node(ctx)}, nil
}

// Node returns the name of the engine's host, as the engine tells it, or ""
// while the engine cannot say.
func (d *Runtime) Node(ctx context.Context) string {
	d.nodeMu.Lock()
	defer d.nodeMu.Unlock()
	if d.node == "" {
		if info, err := d.cli.Info(ctx); err == nil {
			d.node = info.Name
		}
	}
	return d.node
}

func (d *Runtime) create(ctx context.Context, spec oneoff.Spec) (string, error) {
	defer d.timed("create")()
	cfg, host := d.containerConfig(spec, d.quotaSupported(ctx))
	var appNet *appNetwork
	if d.iso.AppNetworks && spec.App != "" {
		appNet = d.appNetwork(spec.App)
		appNet.use.RLock()
		defer appNet.use.RUnlock()
	}
	for attempt := 0; ; attempt++ {
		if appNet != nil {
			id, err := d.ensureNetwork(ctx, appNet, spec.App)
			if err != nil {
				return "", err
			}
			host.NetworkMode = container.NetworkMode(id)
		}
		resp, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
		if err == nil {
			return resp.ID, nil
		}
		if appNet != nil && attempt == 0 && cerrdefs.IsNotFound(err) && strings.Contains(err.Error(), "network") {
			appNet.forget() // removed behind this process's back: make it again
			continue
		}
		if cerrdefs.IsNotFound(err) {
			return "", &errdefs.Error{Class: errdefs.ErrNotFound, Code: "image_not_found", Err: err,
				Message: fmt.Sprintf("image %q is not on the engine: push it where the engine can pull it, or load it with docker load", spec.Image)}
		}
		return "", d.wrap("create container", err)
	}
}

// containerConfig is what the engine is asked to make for spec; quota says
// the storage driver can bound the writable layer.
func (d *Runtime) containerConfig(spec oneoff.Spec, quota bool) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:        spec.Image,
		Cmd:          spec.Cmd,
		Env:          spec.Env,
		Tty:          spec.TTY,
		OpenStdin:    spec.Stdin,
		StdinOnce:    spec.Stdin,
		AttachStdin:  spec.Stdin,
		AttachStdout: true,
		AttachStderr: true,
		Labels:       spec.Labels,
	}
	init := true
	host := &container.HostConfig{
		// An init process reaps zombies and forwards signals, so that a
		// shell command gets SIGINT and SIGTERM as it would on a host.
		Init: &init,
		// Output goes to the attached terminal; the engine keeps none.
		LogConfig: container.LogConfig{Type: "none"},
	}
	if spec.Logs {
		// The engine's log is where a detached one-off's output is read
		// from, and read again after a restart: the local driver is
		// compact and readable, and its size is set here rather than
		// left to the engine's defaults, which may rotate lines away
		// before they are read.
		host.LogConfig = container.LogConfig{Type: "local", Config: map[string]string{"max-size": "100m", "max-file": "3"}}
	}
	if spec.TTY && !spec.Window.IsZero() {
		host.ConsoleSize = [2]uint{uint(spec.Window.Rows), uint(spec.Window.Cols)}
	}
	if l := spec.Limits; l.Memory > 0 {
		host.Resources.Memory = l.Memory
		host.Resources.MemorySwap = l.Memory // no swap beyond the limit
	}
	if l := spec.Limits; l.CPUs > 0 {
		host.Resources.NanoCPUs = int64(l.CPUs * 1e9)
	}
	if l := spec.Limits; l.Pids > 0 {
		pids := l.Pids
		host.Resources.PidsLimit = &pids
	}
	d.iso.apply(host, quota)
	return cfg, host
}

// Start starts a created container: attached first when asked, and with
// its exit awaited before it starts, so that neither its first output nor
// a quick exit is missed.
func (d *Runtime) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	var p oneoff.Process
	if opts.Attach {
		s, err := d.attach(ctx, id, opts.TTY)
		if err != nil {
			return p, err
		}
		p.Stream = s
	}
	watch := opts.Watch
	if watch == nil {
		watch = context.Background()
	}
	// A container that never starts never gets to its next exit: the
	// wait is given up with the start.
	watch, stopWatching := context.WithCancel(watch)
	exit := d.wait(watch, id, container.WaitConditionNextExit)
	if err := d.start(ctx, id); err != nil {
		stopWatching()
		if p.Stream != nil {
			p.Stream.Close()
		}
		return oneoff.Process{}, err
	}
	out := make(chan oneoff.Exit, 1)
	go func() {
		defer stopWatching()
		out <- <-exit
	}()
	p.Exit = out
	return p, nil
}

// attach connects to the container's stdio.
func (d *Runtime) attach(ctx context.Context, id string, tty bool) (oneoff.Stream, error) {
	defer d.timed("attach")()
	resp, err := d.cli.ContainerAttach(ctx, id, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true, DetachKeys: detachKeys,
	})
	if err != nil {
		return nil, d.wrap("attach container", err)
	}
	return &stream{resp: resp, tty: tty}, nil
}

// Wait yields how the run of a started container ends, and whether the
// kernel killed it for memory.
func (d *Runtime) Wait(ctx context.Context, id string) <-chan oneoff.Exit {
	return d.wait(ctx, id, container.WaitConditionNotRunning)
}

func (d *Runtime) wait(ctx context.Context, id string, cond container.WaitCondition) <-chan oneoff.Exit {
	out := make(chan oneoff.Exit, 1)
	done := d.timed("wait")
	resC, errC := d.cli.ContainerWait(ctx, id, cond)
	done()
	go func() {
		select {
		case r := <-resC:
			if r.Error != nil && r.Error.Message != "" {
				out <- oneoff.Exit{Code: int(r.StatusCode), Err: errors.New(r.Error.Message)}
				return
			}
			exit := oneoff.Exit{Code: int(r.StatusCode)}
			if info, err := d.cli.ContainerInspect(ctx, id); err == nil && info.State != nil {
				exit.OOMKilled = info.State.OOMKilled
			}
			out <- exit
		case err := <-errC:
			out <- oneoff.Exit{Code: -1, Err: d.wrap("wait container", err)}
		}
	}()
	return out
}

// Logs reads the container's log with the engine's timestamps.
func (d *Runtime) Logs(ctx context.Context, id string, opts oneoff.LogOptions) (oneoff.LogReader, error) {
	defer d.timed("logs")()
	o := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: opts.Follow, Timestamps: true}
	if !opts.Since.IsZero() {
		o.Since = opts.Since.UTC().Format(time.RFC3339Nano)
	}
	if opts.Tail > 0 {
		o.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := d.cli.ContainerLogs(ctx, id, o)
	if err != nil {
		return nil, d.wrap("read container log", err)
	}
	return newLogReader(rc, opts.TTY), nil
}

// start starts a created container.
func (d *Runtime) start(ctx context.Context, id string) error {
	defer d.timed("start")()
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return d.wrap("start container", err)
	}
	return nil
}

// CopyTo unpacks a tar stream into dir in the container.
func (d *Runtime) CopyTo(ctx context.Context, id, dir string, content io.Reader) error {
	defer d.timed("copy")()
	if err := d.cli.CopyToContainer(ctx, id, dir, content, container.CopyToContainerOptions{}); err != nil {
		return d.wrap("copy into container", err)
	}
	return nil
}

// Resize sets the TTY's size. Right after Start the engine may not be ready
// to resize yet, so failures are retried briefly.
func (d *Runtime) Resize(ctx context.Context, id string, size oneoff.TermSize) error {
	if size.IsZero() {
		return nil
	}
	opts := container.ResizeOptions{Height: uint(size.Rows), Width: uint(size.Cols)}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		done := d.timed("resize")
		err = d.cli.ContainerResize(ctx, id, opts)
		done()
		if err == nil {
			return nil
		}
		if cerrdefs.IsNotFound(err) || client.IsErrConnectionFailed(err) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	return d.wrap("resize container", err)
}

// Signal sends a signal to the container's main process.
func (d *Runtime) Signal(ctx context.Context, id, signal string) error {
	defer d.timed("signal")()
	if err := d.cli.ContainerKill(ctx, id, signal); err != nil {
		return d.wrap("signal container", err)
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL after grace. Stopping a container that
// is not running or does not exist is not an error.
func (d *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	defer d.timed("stop")()
	secs := int(math.Ceil(grace.Seconds()))
	err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return d.wrap("stop container", err)
	}
	return nil
}

// Remove deletes the container and its anonymous volumes.
func (d *Runtime) Remove(ctx context.Context, id string) error {
	defer d.timed("remove")()
	d.leaveAppNetworks(ctx, id)
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return nil
	}
	return d.wrap("remove container", err)
}

// List returns the containers carrying all of labels.
func (d *Runtime) List(ctx context.Context, labels map[string]string) ([]oneoff.Container, error) {
	defer d.timed("list")()
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, d.wrap("list containers", err)
	}
	out := make([]oneoff.Container, 0, len(list))
	node := d.Node(ctx)
	for _, c := range list {
		out = append(out, oneoff.Container{ID: c.ID, Labels: c.Labels, Running: c.State == "running",
			Started: c.State != "created", Node: node})
	}
	return out, nil
}

// wrap turns an engine error into an error with a class the API can map,
// and counts it.
func (d *Runtime) wrap(op string, err error) error {
	d.failed(op)
	switch {
	case client.IsErrConnectionFailed(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the Docker engine at %s does not answer: check that it runs (docker info) and that DOCKER_HOST points to it", d.cli.DaemonHost())
	case engineWentAway(err):
		return errdefs.Unavailable(oneoff.CodeEngineUnavailable, err,
			"the Docker engine at %s went away: check that it runs (docker info); oneoffd resumes once it answers again", d.cli.DaemonHost())
	case cerrdefs.IsNotFound(err):
		return &errdefs.Error{Class: errdefs.ErrNotFound, Code: "container_not_found", Message: op + ": no such container", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// engineWentAway reports whether err is the engine's connection ending in
// the middle of a request or a stream, as when the engine stops or is
// killed: the end of a body that had more to say, or a connection reset or
// refused by the peer.
func engineWentAway(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up, not the engine
	}
	for _, gone := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.EPIPE, syscall.ENOENT} {
		if errors.Is(err, gone) {
			return true
		}
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// stream is an attached container's stdio over the engine's hijacked
// connection.
type stream struct {
	resp types.HijackedResponse
	tty  bool
}

func (s *stream) Write(p []byte) (int, error) { return s.resp.Conn.Write(p) }

func (s *stream) CloseWrite() error { return s.resp.CloseWrite() }

func (s *stream) CopyOutput(stdout, stderr io.Writer) error {
	var err error
	if s.tty {
		// Reads as large as what has come, rather than the 4 KiB the
		// engine's buffered reader hands out at a time, and a pause after
		// a short one: a terminal's output flood then goes out in fewer,
		// larger writes, each of which costs the terminal's path a system
		// call and a wake-up or two.
		_, err = io.CopyBuffer(stdout, &coalescing{r: s.resp.Reader}, make([]byte, 64<<10))
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, s.resp.Reader)
	}
	return err
}

func (s *stream) Close() error {
	s.resp.Close()
	return nil
}

// coalescePause is how long CopyOutput waits after a short read of a
// terminal's output for more to come: unnoticeable on a keystroke's echo,
// and what lets a flood be read in large pieces.
const coalescePause = 500 * time.Microsecond

// coalescing reads r, pausing after a short read while the output flows.
type coalescing struct {
	r     io.Reader
	short bool // the previous read was short
}

func (c *coalescing) Read(p []byte) (int, error) {
	if c.short {
		time.Sleep(coalescePause)
	}
	n, err := c.r.Read(p)
	c.short = n > 0 && n < len(p)/4
	return n, err
}
