package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// detachKeys replaces the engine's default detach sequence (Ctrl-P
// Ctrl-Q), which would swallow a shell user's Ctrl-P, and which cannot be
// turned off. runtime/docker's bytes 0xFF 0xFE cannot be given to an exec:
// its options travel as JSON, which carries only UTF-8, and the engine
// takes only ASCII keys. This sequence of four control keys (NUL, RS, NUL,
// US) is one nobody types; binary data piped in might hold it.
const detachKeys = "ctrl-@,ctrl-^,ctrl-@,ctrl-_"

// breakWait bounds how long a one-off whose node's engine stopped
// answering waits for the swarm to say whether the node is lost: a node
// shows down about 12 s after its engine stopped.
const breakWait = 25 * time.Second

// oneOff is what the runtime knows of one one-off's service.
type oneOff struct {
	service   string
	node      *node
	container string

	cmd []string // the one-off's command, as the service keeps it
	env []string // set on the attached command's exec: a warm holder has none of it

	mu     sync.Mutex
	image  *imageInfo // the image's, once known
	argv   []string   // cmd with the image's entrypoint, once known
	execID string     // the attached command's exec
}

// imageInfo is what of an image makes a one-off's command line.
type imageInfo struct {
	entrypoint, cmd []string
}

// adopt learns where a running task of service runs, whose one-off runs
// cmd with env added to the container's. The command line, cmd after the
// image's entrypoint, is learnt when Start needs it, and, when eager,
// meanwhile in the background: the node's two inspects are then off the
// way to the command's start.
func (r *Runtime) adopt(ctx context.Context, service string, t swarm.Task, cmd, env []string, eager bool) (*oneOff, error) {
	if t.Status.ContainerStatus == nil || t.Status.ContainerStatus.ContainerID == "" {
		return nil, fmt.Errorf("the task of service %s has no container", service)
	}
	n, err := r.node(ctx, t.NodeID)
	if err != nil {
		return nil, err
	}
	o := &oneOff{service: service, node: n, container: t.Status.ContainerStatus.ContainerID, cmd: cmd, env: env}
	if eager {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = o.command(ctx) // Start asks again on failure
		}()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.ones[service]; cur != nil {
		// A concurrent lookup adopted it first: one oneOff per service,
		// or an exec started on one would be unknown to the other.
		return cur, nil
	}
	r.ones[service] = o
	return o, nil
}

// command returns the argv the one-off runs: its command after the
// image's entrypoint, as the node that pulled the image says it.
func (o *oneOff) command(ctx context.Context) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.argv != nil {
		return o.argv, nil
	}
	if o.image == nil {
		img, err := imageOf(ctx, o.node, o.container)
		if err != nil {
			return nil, err
		}
		o.image = img
	}
	o.argv = commandLine(o.image.entrypoint, o.image.cmd, o.cmd)
	return o.argv, nil
}

// imageOf returns the entrypoint and command of a container's image, as
// its node says.
func imageOf(ctx context.Context, n *node, container string) (*imageInfo, error) {
	info, err := n.cli.ContainerInspect(ctx, container)
	if err != nil {
		return nil, wrapNode(n, "inspect container", err)
	}
	img, err := n.cli.ImageInspect(ctx, info.Image)
	if err != nil {
		return nil, wrapNode(n, "inspect image", err)
	}
	if img.Config == nil {
		return &imageInfo{}, nil
	}
	return &imageInfo{entrypoint: img.Config.Entrypoint, cmd: img.Config.Cmd}, nil
}

// lookup returns the one-off of a service, asking the manager where it
// runs when this process did not create it.
func (r *Runtime) lookup(ctx context.Context, id string) (*oneOff, error) {
	r.mu.Lock()
	o := r.ones[id]
	r.mu.Unlock()
	if o != nil {
		return o, nil
	}
	svc, _, err := r.mgr.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, r.wrapManager("inspect service", err)
	}
	t, ok, err := r.task(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok || t.Status.ContainerStatus == nil || t.Status.ContainerStatus.ContainerID == "" {
		return nil, &errdefs.Error{Class: errdefs.ErrNotFound, Code: "container_not_found",
			Message: fmt.Sprintf("the one-off's service %s has no container", id)}
	}
	var cmd []string
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		cmd = cs.Args
	}
	// A warm holder's one-off keeps its command and environment in its
	// service's labels.
	var env []string
	if v, ok := svc.Spec.Labels[labelCmd]; ok {
		if err := json.Unmarshal([]byte(v), &cmd); err != nil {
			return nil, fmt.Errorf("the command of service %s: %w", id, err)
		}
		if err := json.Unmarshal([]byte(svc.Spec.Labels[labelEnv]), &env); err != nil {
			return nil, fmt.Errorf("the environment of service %s: %w", id, err)
		}
	}
	return r.adopt(ctx, id, t, cmd, env, false)
}

// Start runs the one-off's command. Attached, it runs as an exec in the
// container, its stdio attached as it starts; detached, the holder is
// released and becomes the command.
func (r *Runtime) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	o, err := r.lookup(ctx, id)
	if err != nil {
		return oneoff.Process{}, err
	}
	argv, err := o.command(ctx)
	if err != nil {
		return oneoff.Process{}, err
	}
	watch := opts.Watch
	if watch == nil {
		watch = context.Background()
	}
	if !opts.Attach {
		exit, err := r.waitContainer(watch, o)
		if err != nil {
			return oneoff.Process{}, err
		}
		if err := o.node.cli.CopyToContainer(ctx, o.container, "/tmp", bytes.NewReader(runArchive(argv)), container.CopyToContainerOptions{}); err != nil {
			return oneoff.Process{}, wrapNode(o.node, "start command", err)
		}
		return oneoff.Process{Exit: exit}, nil
	}
	ex, err := o.node.cli.ContainerExecCreate(ctx, o.container, container.ExecOptions{
		Cmd: attachedCommand(argv), Env: o.env, Tty: opts.TTY, DetachKeys: detachKeys,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return oneoff.Process{}, wrapNode(o.node, "create exec", err)
	}
	resp, err := o.node.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{Tty: opts.TTY})
	if err != nil {
		return oneoff.Process{}, wrapNode(o.node, "start exec", err)
	}
	o.mu.Lock()
	o.execID = ex.ID
	o.mu.Unlock()
	s := &execStream{Stream: docker.NewStream(resp, opts.TTY), ended: make(chan struct{})}
	return oneoff.Process{Stream: s, Exit: r.waitExec(watch, o, ex.ID, s.ended)}, nil
}

// execStream is an attached exec's stdio; ended is closed once its output
// has been copied to the end.
type execStream struct {
	oneoff.Stream
	once  sync.Once
	ended chan struct{}
}

func (s *execStream) CopyOutput(stdout, stderr io.Writer) error {
	defer s.once.Do(func() { close(s.ended) })
	return s.Stream.CopyOutput(stdout, stderr)
}

// waitContainer yields how the container's process ends: it waits from
// now, on the node's engine, and on the node's state with the manager.
func (r *Runtime) waitContainer(watch context.Context, o *oneOff) (<-chan oneoff.Exit, error) {
	lostC, stop := r.mon.watch(o.node.id)
	// The wait's request ends with the exit: a lost node's never answers.
	wctx, cancel := context.WithCancel(watch)
	resC, errC := o.node.cli.ContainerWait(wctx, o.container, container.WaitConditionNotRunning)
	select {
	case err := <-errC:
		cancel()
		stop()
		return nil, wrapNode(o.node, "wait container", err)
	default:
	}
	out := make(chan oneoff.Exit, 1)
	go func() {
		defer cancel()
		defer stop()
		select {
		case res := <-resC:
			if res.Error != nil && res.Error.Message != "" {
				out <- oneoff.Exit{Code: int(res.StatusCode), Err: errors.New(res.Error.Message)}
				return
			}
			exit := oneoff.Exit{Code: int(res.StatusCode)}
			if info, err := o.node.cli.ContainerInspect(watch, o.container); err == nil && info.State != nil {
				exit.OOMKilled = info.State.OOMKilled
			}
			out <- exit
		case err := <-errC:
			if watch.Err() != nil {
				out <- oneoff.Exit{Code: -1, Err: fmt.Errorf("wait container: %w", watch.Err())}
				return
			}
			out <- r.broken(watch, o, wrapNode(o.node, "wait container", err), lostC)
		case err := <-lostC:
			out <- oneoff.Exit{Code: -1, Err: err}
		}
	}()
	return out, nil
}

// waitExec yields how an attached exec ends: once its output has ended
// (or, when nobody reads it, as a poll finds), by its exit code.
func (r *Runtime) waitExec(watch context.Context, o *oneOff, execID string, ended <-chan struct{}) <-chan oneoff.Exit {
	out := make(chan oneoff.Exit, 1)
	lostC, stop := r.mon.watch(o.node.id)
	go func() {
		defer stop()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var after <-chan time.Time // polls fast once the output has ended
		for {
			select {
			case <-ended:
				ended = nil
				after = time.After(0)
			case <-after:
				after = time.After(20 * time.Millisecond)
			case <-tick.C:
			case err := <-lostC:
				out <- oneoff.Exit{Code: -1, Err: err}
				return
			case <-watch.Done():
				out <- oneoff.Exit{Code: -1, Err: fmt.Errorf("wait exec: %w", watch.Err())}
				return
			}
			ins, err := o.node.cli.ContainerExecInspect(watch, execID)
			if err != nil {
				if watch.Err() != nil {
					continue
				}
				out <- r.broken(watch, o, wrapNode(o.node, "inspect exec", err), lostC)
				return
			}
			if ins.Running {
				continue
			}
			exit := oneoff.Exit{Code: ins.ExitCode}
			if ins.ExitCode == 137 {
				exit.OOMKilled = r.oomKilled(watch, o)
			}
			out <- exit
			return
		}
	}()
	return out
}

// broken is the exit of a one-off whose node's engine stopped answering:
// node_lost once the swarm gives the node up, else, after breakWait, the
// engine's error.
func (r *Runtime) broken(ctx context.Context, o *oneOff, cause error, lostC <-chan error) oneoff.Exit {
	if errors.Is(cause, errdefs.ErrNotFound) || cerrdefs.IsNotFound(cause) {
		// The engine answered: the container is gone, not the node.
		return oneoff.Exit{Code: -1, Err: cause}
	}
	if s, ok := r.nodeState(ctx, o.node.id); ok && lost(s) {
		return oneoff.Exit{Code: -1, Err: nodeLostError(o.node.name, s)}
	}
	t := time.NewTimer(breakWait)
	defer t.Stop()
	select {
	case err := <-lostC:
		return oneoff.Exit{Code: -1, Err: err}
	case <-t.C:
		return oneoff.Exit{Code: -1, Err: cause}
	case <-ctx.Done():
		return oneoff.Exit{Code: -1, Err: cause}
	}
}

// oomKilled reports whether the kernel killed a process of the container
// for memory: the holder container runs on, so its State.OOMKilled does not
// say; its memory cgroup's oom_kill count does.
func (r *Runtime) oomKilled(ctx context.Context, o *oneOff) bool {
	if info, err := o.node.cli.ContainerInspect(ctx, o.container); err == nil && info.State != nil && info.State.OOMKilled {
		return true
	}
	text, err := r.execOutput(ctx, o, []string{"/bin/sh", "-c",
		"cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || cat /sys/fs/cgroup/memory.events"})
	if err != nil {
		return false
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n > 0
		}
	}
	return false
}

// execOutput runs argv in the container and returns its output.
func (r *Runtime) execOutput(ctx context.Context, o *oneOff, argv []string) (string, error) {
	ex, err := o.node.cli.ContainerExecCreate(ctx, o.container, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", wrapNode(o.node, "create exec", err)
	}
	resp, err := o.node.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", wrapNode(o.node, "start exec", err)
	}
	defer resp.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, resp.Reader); err != nil {
		return "", wrapNode(o.node, "read exec", err)
	}
	ins, err := o.node.cli.ContainerExecInspect(ctx, ex.ID)
	if err == nil && ins.ExitCode != 0 {
		err = fmt.Errorf("%s exited with %d: %s", argv[0], ins.ExitCode, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

// Wait yields how the command of a one-off started before ends, watching
// its container on its node and its node with the manager.
func (r *Runtime) Wait(ctx context.Context, id string) <-chan oneoff.Exit {
	out := make(chan oneoff.Exit, 1)
	go func() {
		o, err := r.lookup(ctx, id)
		if err != nil {
			out <- oneoff.Exit{Code: -1, Err: r.lostOr(ctx, id, err)}
			return
		}
		exit, err := r.waitContainer(ctx, o)
		if err != nil {
			lostC, stop := r.mon.watch(o.node.id)
			defer stop()
			out <- r.broken(ctx, o, err, lostC)
			return
		}
		out <- <-exit
	}()
	return out
}

// lostOr returns a node_lost error when the node of the one-off's task is
// lost, else err.
func (r *Runtime) lostOr(ctx context.Context, id string, err error) error {
	if !oneoff.EngineGone(err) {
		return err
	}
	t, ok, terr := r.task(ctx, id)
	if terr != nil || !ok {
		return err
	}
	if s, ok := r.nodeState(ctx, t.NodeID); ok && lost(s) {
		r.mu.Lock()
		name := r.names[t.NodeID].name
		r.mu.Unlock()
		if name == "" {
			name = t.NodeID
		}
		return nodeLostError(name, s)
	}
	return err
}

// Logs reads the container's log on its node, with the engine's
// timestamps.
func (r *Runtime) Logs(ctx context.Context, id string, opts oneoff.LogOptions) (oneoff.LogReader, error) {
	o, err := r.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: opts.Follow, Timestamps: true}
	if !opts.Since.IsZero() {
		lo.Since = opts.Since.UTC().Format(time.RFC3339Nano)
	}
	if opts.Tail > 0 {
		lo.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := o.node.cli.ContainerLogs(ctx, o.container, lo)
	if err != nil {
		return nil, wrapNode(o.node, "read container log", err)
	}
	return docker.NewLogReader(newPump(rc), opts.TTY), nil
}

// CopyTo unpacks a tar stream into dir in the container.
func (r *Runtime) CopyTo(ctx context.Context, id, dir string, content io.Reader) error {
	o, err := r.lookup(ctx, id)
	if err != nil {
		return err
	}
	if err := o.node.cli.CopyToContainer(ctx, o.container, dir, content, container.CopyToContainerOptions{}); err != nil {
		return wrapNode(o.node, "copy into container", err)
	}
	return nil
}

// Resize sets the size of the command's TTY: the exec's, attached, or the
// container's. Right after Start the engine may not be ready to resize
// yet, so failures are retried briefly.
func (r *Runtime) Resize(ctx context.Context, id string, size oneoff.TermSize) error {
	if size.IsZero() {
		return nil
	}
	o, err := r.lookup(ctx, id)
	if err != nil {
		return err
	}
	o.mu.Lock()
	execID := o.execID
	o.mu.Unlock()
	opts := container.ResizeOptions{Height: uint(size.Rows), Width: uint(size.Cols)}
	for attempt := 0; ; attempt++ {
		if execID != "" {
			err = o.node.cli.ContainerExecResize(ctx, execID, opts)
		} else {
			err = o.node.cli.ContainerResize(ctx, o.container, opts)
		}
		if err == nil || attempt == 9 || cerrdefs.IsNotFound(err) || client.IsErrConnectionFailed(err) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	if err != nil {
		return wrapNode(o.node, "resize", err)
	}
	return nil
}

// Signal sends a signal to the command: to the exec's process, attached,
// by the pid it wrote; to the container's, detached.
func (r *Runtime) Signal(ctx context.Context, id, signal string) error {
	o, err := r.lookup(ctx, id)
	if err != nil {
		return err
	}
	o.mu.Lock()
	execID := o.execID
	o.mu.Unlock()
	if execID == "" {
		if err := o.node.cli.ContainerKill(ctx, o.container, signal); err != nil {
			return wrapNode(o.node, "signal container", err)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(signal), "SIG")
	if name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+") != "" {
		return errdefs.Invalid("invalid_signal", "%q is not a signal name", signal)
	}
	if _, err := r.execOutput(ctx, o, []string{"/bin/sh", "-c", "kill -" + name + ` "$(cat ` + pidFile + `)"`}); err != nil {
		return fmt.Errorf("signal command: %w", err)
	}
	return nil
}

// Stop sends SIGTERM to the command, then, after grace, SIGKILL to
// everything in the container. Stopping a one-off that is not running or
// does not exist is not an error.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	o, err := r.lookup(ctx, id)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		return err
	}
	o.mu.Lock()
	execID := o.execID
	o.mu.Unlock()
	if execID == "" {
		secs := int(math.Ceil(grace.Seconds()))
		err := o.node.cli.ContainerStop(ctx, o.container, container.StopOptions{Timeout: &secs})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return wrapNode(o.node, "stop container", err)
		}
		return nil
	}
	if err := r.Signal(ctx, id, "TERM"); err == nil {
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			ins, err := o.node.cli.ContainerExecInspect(ctx, execID)
			if err != nil || !ins.Running {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// The container's init, and with it every process in the container.
	if err := o.node.cli.ContainerKill(ctx, o.container, "KILL"); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		return wrapNode(o.node, "kill container", err)
	}
	return nil
}
