// Package fakeruntime is an in-memory oneoff.Runtime for the unit tests of
// oneoff and api: it records the calls made to it and simulates containers
// whose output and exit the test controls.
package fakeruntime

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// waitLimit bounds every wait for something that should happen at once;
// only a broken test reaches it.
const waitLimit = 5 * time.Second

var _ oneoff.Runtime = (*Runtime)(nil)

// Runtime is an in-memory oneoff.Runtime whose containers the test drives.
type Runtime struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*container
	gone       map[string]bool // removed containers
	calls      []string        // "create", "start c1", "output-end c1", ...

	// CreateErr, when set, fails every Create.
	CreateErr error
	// StartErr, when set, fails every Start.
	StartErr error
	// CreateHook, when set, runs at the start of Create, as if the engine
	// took its time; it may call the Manager.
	CreateHook func(oneoff.Spec)
	// FollowCutShort makes a log follow end as soon as its container has
	// stopped, whatever it has not read yet, as some engines do.
	FollowCutShort bool
	// PullHook, when set, runs for each Pull: it may report progress,
	// wait, or fail.
	PullHook func(ctx context.Context, ref string, progress func(oneoff.PullProgress)) error

	images images
}

// container is a simulated container.
type container struct {
	id       string
	spec     oneoff.Spec
	running  bool
	stream   *Stream
	waiters  []chan oneoff.Exit
	resizes  []oneoff.TermSize
	signals  []string
	attached chan struct{} // closed by Attach
	started  chan struct{} // closed by Start
	exitCode *int          // the last run's exit code
	oom      bool          // the next exit is an out-of-memory kill
	log      []oneoff.LogEntry
	files    map[string][]byte
	changed  chan struct{} // closed and replaced when log or state change
}

// notify wakes the container's log followers.
func (c *container) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// New returns a Runtime with no containers.
func New() *Runtime {
	return &Runtime{containers: map[string]*container{}, gone: map[string]bool{}}
}

func (r *Runtime) record(format string, args ...any) {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *Runtime) get(id string) (*container, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container_not_found", "no container %s", id)
	}
	return c, nil
}

// Create makes a stopped container from spec, unless CreateErr is set.
func (r *Runtime) Create(_ context.Context, spec oneoff.Spec) (oneoff.Placement, error) {
	if r.CreateHook != nil {
		r.CreateHook(spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("create")
	if r.CreateErr != nil {
		return oneoff.Placement{}, r.CreateErr
	}
	return oneoff.Placement{ID: r.addLocked(spec, false), Node: Node}, nil
}

// Node is the node every fake container is placed on.
const Node = "fake-node"

// Start runs container id: attached first when asked, its exit awaited,
// then marked running (unless StartErr is set).
func (r *Runtime) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	var p oneoff.Process
	if opts.Attach {
		s, err := r.attach(ctx, id)
		if err != nil {
			return p, err
		}
		p.Stream = s
	}
	p.Exit = r.wait(ctx, id, false)
	if err := r.start(ctx, id); err != nil {
		return oneoff.Process{}, err
	}
	return p, nil
}

// Wait yields how container id's current run ends, at once if it has.
func (r *Runtime) Wait(ctx context.Context, id string) <-chan oneoff.Exit {
	return r.wait(ctx, id, true)
}

func (r *Runtime) addLocked(spec oneoff.Spec, running bool) string {
	r.seq++
	id := fmt.Sprintf("c%d", r.seq)
	spec.Labels = maps.Clone(spec.Labels)
	spec.Env = slices.Clone(spec.Env)
	spec.Cmd = slices.Clone(spec.Cmd)
	r.containers[id] = &container{id: id, spec: spec, running: running,
		attached: make(chan struct{}), started: make(chan struct{}), changed: make(chan struct{})}
	return id
}

// attach gives container id a Stream the test can feed and read.
func (r *Runtime) attach(_ context.Context, id string) (oneoff.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("attach %s", id)
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	c.stream = newStream(func() { r.mu.Lock(); r.record("output-end %s", id); r.mu.Unlock() })
	close(c.attached)
	return c.stream, nil
}

// wait returns a channel that yields container id's next exit, or with
// started the end of its current run, at once if it has ended.
func (r *Runtime) wait(_ context.Context, id string, started bool) <-chan oneoff.Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan oneoff.Exit, 1)
	c, err := r.get(id)
	if err != nil {
		ch <- oneoff.Exit{Err: err}
		return ch
	}
	if started && !c.running {
		code := 0
		if c.exitCode != nil {
			code = *c.exitCode
		}
		ch <- oneoff.Exit{Code: code}
		return ch
	}
	c.waiters = append(c.waiters, ch)
	return ch
}

// Logs reads container id's log, as the test wrote it with Log.
func (r *Runtime) Logs(ctx context.Context, id string, opts oneoff.LogOptions) (oneoff.LogReader, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("logs %s follow=%v", id, opts.Follow)
	if _, err := r.get(id); err != nil {
		return nil, err
	}
	lr := &logReader{r: r, id: id, ctx: ctx, opts: opts}
	if c := r.containers[id]; opts.Tail > 0 && len(c.log) > opts.Tail {
		lr.next = len(c.log) - opts.Tail
	}
	return lr, nil
}

// logReader reads a fake container's log.
type logReader struct {
	r    *Runtime
	id   string
	ctx  context.Context
	opts oneoff.LogOptions
	next int
}

func (l *logReader) Next() (oneoff.LogEntry, error) {
	for {
		l.r.mu.Lock()
		c, err := l.r.get(l.id)
		if err != nil {
			l.r.mu.Unlock()
			return oneoff.LogEntry{}, io.EOF
		}
		if l.opts.Follow && l.r.FollowCutShort && !c.running && c.exitCode != nil {
			l.r.mu.Unlock()
			return oneoff.LogEntry{}, io.EOF
		}
		for l.next < len(c.log) {
			e := c.log[l.next]
			l.next++
			if !e.Time.Before(l.opts.Since) {
				l.r.mu.Unlock()
				return e, nil
			}
		}
		if !l.opts.Follow || !c.running {
			l.r.mu.Unlock()
			return oneoff.LogEntry{}, io.EOF
		}
		changed := c.changed
		l.r.mu.Unlock()
		select {
		case <-changed:
		case <-l.ctx.Done():
			return oneoff.LogEntry{}, l.ctx.Err()
		}
	}
}

func (l *logReader) Close() error { return nil }

// start marks container id running, unless StartErr is set.
func (r *Runtime) start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("start %s", id)
	if r.StartErr != nil {
		return r.StartErr
	}
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if c.running {
		return errdefs.Conflict("already_running", "container %s is running", id)
	}
	c.running = true
	close(c.started)
	c.notify()
	return nil
}

// CopyTo reads the tar stream and keeps its regular files, by path, for
// Files.
func (r *Runtime) CopyTo(_ context.Context, id, dir string, content io.Reader) error {
	tr := tar.NewReader(content)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			files[path.Join(dir, h.Name)] = b
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	r.record("copy %s", id)
	if c.files == nil {
		c.files = map[string][]byte{}
	}
	maps.Copy(c.files, files)
	return nil
}

// Files returns the files copied into container id, by path.
func (r *Runtime) Files(t testing.TB, id string) map[string][]byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("files: %v", err)
	}
	return maps.Clone(c.files)
}

// Resize records the size container id was sent.
func (r *Runtime) Resize(_ context.Context, id string, size oneoff.TermSize) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	c.resizes = append(c.resizes, size)
	return nil
}

// Signal records the signal container id was sent.
func (r *Runtime) Signal(_ context.Context, id, signal string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	c.signals = append(c.signals, signal)
	return nil
}

// Stop makes a running container exit with 143, as SIGTERM would.
func (r *Runtime) Stop(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("stop %s", id)
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if c.running {
		c.exit(143, true)
	}
	return nil
}

// Remove kills a running container (exit 137) and forgets it.
func (r *Runtime) Remove(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("remove %s", id)
	c, ok := r.containers[id]
	if !ok {
		return nil
	}
	if c.running {
		c.exit(137, true)
	}
	delete(r.containers, id)
	r.gone[id] = true
	return nil
}

// List returns the containers carrying all of labels.
func (r *Runtime) List(_ context.Context, labels map[string]string) ([]oneoff.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []oneoff.Container
	for _, c := range r.containers {
		match := true
		for k, v := range labels {
			if got, ok := c.spec.Labels[k]; !ok || got != v {
				match = false
			}
		}
		if match {
			out = append(out, oneoff.Container{ID: c.id, Labels: maps.Clone(c.spec.Labels), Running: c.running,
				Started: c.running || c.exitCode != nil})
		}
	}
	return out, nil
}

// exit ends the container's process with code; with endOutput its output
// stream ends too, as when the engine closes the attachment.
func (c *container) exit(code int, endOutput bool) {
	c.running = false
	c.exitCode = &code
	for _, w := range c.waiters {
		w <- oneoff.Exit{Code: code, OOMKilled: c.oom}
	}
	c.waiters = nil
	c.notify()
	if endOutput && c.stream != nil {
		c.stream.EndOutput()
	}
}

// The test's controls.

// Add makes a container as a previous daemon would have left it.
func (r *Runtime) Add(labels map[string]string, running bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(oneoff.Spec{Labels: labels}, running)
}

// Log appends an entry to container id's log.
func (r *Runtime) Log(t testing.TB, id string, e oneoff.LogEntry) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	c.log = append(c.log, e)
	c.notify()
}

// LogAndExit appends entries to container id's log and ends its process
// with code, at once: a follower sees the exit and the entries together.
func (r *Runtime) LogAndExit(t testing.TB, id string, entries []oneoff.LogEntry, code int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("log and exit: %v", err)
	}
	c.log = append(c.log, entries...)
	c.exit(code, false)
}

// OOM makes container id's next exit an out-of-memory kill.
func (r *Runtime) OOM(t testing.TB, id string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("oom: %v", err)
	}
	c.oom = true
}

// Exit makes container id's process end with code, and with endOutput its output too.
func (r *Runtime) Exit(t testing.TB, id string, code int, endOutput bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	c.exit(code, endOutput)
}

// Started waits until container id has started and returns its stream.
func (r *Runtime) Started(t testing.TB, id string) *Stream {
	t.Helper()
	r.mu.Lock()
	c, err := r.get(id)
	r.mu.Unlock()
	if err != nil {
		t.Fatalf("started: %v", err)
	}
	select {
	case <-c.started:
	case <-time.After(waitLimit):
		t.Fatalf("container %s did not start", id)
	}
	<-c.attached // Attach comes before Start
	return c.stream
}

// Spec returns the spec container id was created from.
func (r *Runtime) Spec(t testing.TB, id string) oneoff.Spec {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return c.spec
}

// Removed reports whether container id was removed.
func (r *Runtime) Removed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone[id]
}

// ResizesAndSignals returns what container id was sent.
func (r *Runtime) ResizesAndSignals(id string) ([]oneoff.TermSize, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, nil
	}
	return slices.Clone(c.resizes), slices.Clone(c.signals)
}

// Calls returns the calls made so far, such as "create" and "start c1".
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}
