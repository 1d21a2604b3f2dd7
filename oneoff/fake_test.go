package oneoff_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// waitLimit bounds every wait of these tests for something that should
// happen at once; only a broken test reaches it.
const waitLimit = 5 * time.Second

var _ oneoff.Runtime = (*fakeRuntime)(nil)

// fakeRuntime is an in-memory oneoff.Runtime. It records the calls made to
// it and simulates containers whose output and exit the test controls.
type fakeRuntime struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*fakeContainer
	gone       map[string]bool // removed containers
	calls      []string        // "create", "start c1", "output-end c1", ...

	// createErr and startErr, when set, fail every Create or Start.
	createErr error
	startErr  error
	// createHook, when set, runs at the start of Create, as if the engine
	// took its time; it may call the Manager.
	createHook func(oneoff.Spec)
}

// fakeContainer is a simulated container.
type fakeContainer struct {
	id       string
	spec     oneoff.Spec
	running  bool
	stream   *fakeStream
	waiters  []chan oneoff.Exit
	resizes  []oneoff.TermSize
	signals  []string
	attached chan struct{} // closed by Attach
	started  chan struct{} // closed by Start
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{containers: map[string]*fakeContainer{}, gone: map[string]bool{}}
}

func (r *fakeRuntime) record(format string, args ...any) {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *fakeRuntime) get(id string) (*fakeContainer, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container_not_found", "no container %s", id)
	}
	return c, nil
}

func (r *fakeRuntime) Create(_ context.Context, spec oneoff.Spec) (string, error) {
	if r.createHook != nil {
		r.createHook(spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("create")
	if r.createErr != nil {
		return "", r.createErr
	}
	return r.addLocked(spec, false), nil
}

func (r *fakeRuntime) addLocked(spec oneoff.Spec, running bool) string {
	r.seq++
	id := fmt.Sprintf("c%d", r.seq)
	spec.Labels = maps.Clone(spec.Labels)
	spec.Env = slices.Clone(spec.Env)
	spec.Cmd = slices.Clone(spec.Cmd)
	r.containers[id] = &fakeContainer{id: id, spec: spec, running: running,
		attached: make(chan struct{}), started: make(chan struct{})}
	return id
}

func (r *fakeRuntime) Attach(_ context.Context, id string, _ bool) (oneoff.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("attach %s", id)
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	c.stream = newFakeStream(func() { r.mu.Lock(); r.record("output-end %s", id); r.mu.Unlock() })
	close(c.attached)
	return c.stream, nil
}

func (r *fakeRuntime) Wait(_ context.Context, id string) <-chan oneoff.Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan oneoff.Exit, 1)
	c, err := r.get(id)
	if err != nil {
		ch <- oneoff.Exit{Err: err}
		return ch
	}
	c.waiters = append(c.waiters, ch)
	return ch
}

func (r *fakeRuntime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("start %s", id)
	if r.startErr != nil {
		return r.startErr
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
	return nil
}

func (r *fakeRuntime) Resize(_ context.Context, id string, size oneoff.TermSize) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	c.resizes = append(c.resizes, size)
	return nil
}

func (r *fakeRuntime) Signal(_ context.Context, id, signal string) error {
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
func (r *fakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
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
func (r *fakeRuntime) Remove(_ context.Context, id string) error {
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

func (r *fakeRuntime) List(_ context.Context, labels map[string]string) ([]oneoff.Container, error) {
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
			out = append(out, oneoff.Container{ID: c.id, Labels: maps.Clone(c.spec.Labels), Running: c.running})
		}
	}
	return out, nil
}

// exit ends the container's process with code; with endOutput its output
// stream ends too, as when the engine closes the attachment.
func (c *fakeContainer) exit(code int, endOutput bool) {
	c.running = false
	for _, w := range c.waiters {
		w <- oneoff.Exit{Code: code}
	}
	c.waiters = nil
	if endOutput && c.stream != nil {
		c.stream.endOutput()
	}
}

// The test's controls.

// add makes a container as a previous daemon would have left it.
func (r *fakeRuntime) add(labels map[string]string, running bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(oneoff.Spec{Labels: labels}, running)
}

// exit makes container id's process end with code and its output end.
func (r *fakeRuntime) exit(t *testing.T, id string, code int, endOutput bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	c.exit(code, endOutput)
}

// started waits until container id has started and returns its stream.
func (r *fakeRuntime) started(t *testing.T, id string) *fakeStream {
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

// spec returns the spec container id was created from.
func (r *fakeRuntime) spec(t *testing.T, id string) oneoff.Spec {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return c.spec
}

// removed reports whether container id was removed.
func (r *fakeRuntime) removed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone[id]
}

// resizesAndSignals returns what container id was sent.
func (r *fakeRuntime) resizesAndSignals(id string) ([]oneoff.TermSize, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, nil
	}
	return slices.Clone(c.resizes), slices.Clone(c.signals)
}

// callList returns the calls made so far.
func (r *fakeRuntime) callList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// fakeStream is an attached container's stdio: stdin is a pipe the test
// reads, output is what the test feeds.
type fakeStream struct {
	stdin   *io.PipeReader
	stdinW  *io.PipeWriter
	out     chan chunk
	onEnd   func() // called when CopyOutput returns
	mu      sync.Mutex
	ended   bool
	closed  chan struct{}
	closing sync.Once
}

type chunk struct {
	stderr bool
	data   []byte
}

func newFakeStream(onEnd func()) *fakeStream {
	r, w := io.Pipe()
	return &fakeStream{stdin: r, stdinW: w, out: make(chan chunk, 16), onEnd: onEnd, closed: make(chan struct{})}
}

func (s *fakeStream) Write(p []byte) (int, error) { return s.stdinW.Write(p) }
func (s *fakeStream) CloseWrite() error           { return s.stdinW.Close() }

func (s *fakeStream) CopyOutput(stdout, stderr io.Writer) error {
	defer s.onEnd()
	for {
		select {
		case c, ok := <-s.out:
			if !ok {
				return nil
			}
			w := stdout
			if c.stderr {
				w = stderr
			}
			if _, err := w.Write(c.data); err != nil {
				return err
			}
		case <-s.closed:
			return io.ErrClosedPipe
		}
	}
}

func (s *fakeStream) Close() error {
	s.closing.Do(func() {
		close(s.closed)
		s.stdin.CloseWithError(io.ErrClosedPipe)
	})
	return nil
}

// send feeds output; output sent after the end is dropped.
func (s *fakeStream) send(stderr bool, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	select {
	case s.out <- chunk{stderr: stderr, data: []byte(data)}:
	case <-s.closed:
	}
}

func (s *fakeStream) endOutput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.out)
	}
}

// readStdin reads n bytes of what the container got on stdin.
func (s *fakeStream) readStdin(t *testing.T, n int) string {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(s.stdin, b)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("read stdin: %v", r.err)
		}
		return string(r.b)
	case <-time.After(waitLimit):
		t.Fatalf("stdin did not get %d bytes", n)
		return ""
	}
}

var _ oneoff.Conn = (*fakeConn)(nil)

// fakeConn is the user's end of a session: the test sends input and reads
// what the user was shown.
type fakeConn struct {
	in      chan oneoff.Input
	gone    chan struct{}
	leaving sync.Once
	stdout  lockedBuffer
	stderr  lockedBuffer
	results chan oneoff.Result
	// outErr, when set, fails every write of output, as a user who stopped
	// reading would.
	outErr error
}

func newFakeConn(t *testing.T) *fakeConn {
	c := &fakeConn{in: make(chan oneoff.Input), gone: make(chan struct{}), results: make(chan oneoff.Result, 4)}
	t.Cleanup(c.leave)
	return c
}

func (c *fakeConn) Next() (oneoff.Input, error) {
	select {
	case in := <-c.in:
		return in, nil
	case <-c.gone:
		return oneoff.Input{}, io.EOF
	}
}

func (c *fakeConn) Stdout() io.Writer {
	if c.outErr != nil {
		return failingWriter{c.outErr}
	}
	return &c.stdout
}

func (c *fakeConn) Stderr() io.Writer { return &c.stderr }

func (c *fakeConn) Finish(res oneoff.Result) { c.results <- res }

// send hands input to the session.
func (c *fakeConn) send(t *testing.T, in oneoff.Input) {
	t.Helper()
	select {
	case c.in <- in:
	case <-time.After(waitLimit):
		t.Fatal("the session does not read input")
	}
}

// leave makes Next fail, as when the user's connection drops.
func (c *fakeConn) leave() { c.leaving.Do(func() { close(c.gone) }) }

// finished returns every result the user was told, in order.
func (c *fakeConn) finished() []oneoff.Result {
	var out []oneoff.Result
	for {
		select {
		case r := <-c.results:
			out = append(out, r)
		default:
			return out
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
