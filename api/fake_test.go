package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

// waitLimit bounds every wait for something that should happen at once.
const waitLimit = 5 * time.Second

var _ oneoff.Runtime = (*fakeRuntime)(nil)

// fakeRuntime is a minimal in-memory oneoff.Runtime: containers whose
// output and exit the test controls. Stop and Remove end them.
type fakeRuntime struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*fakeContainer
	createErr  error // when set, Create fails with it
}

type fakeContainer struct {
	labels  map[string]string
	running bool
	waiters []chan oneoff.Exit
	stream  *fakeStream
	started chan struct{} // closed by Start, after Attach
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{containers: map[string]*fakeContainer{}}
}

func (r *fakeRuntime) get(id string) (*fakeContainer, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container_not_found", "no container %s", id)
	}
	return c, nil
}

func (r *fakeRuntime) Create(_ context.Context, spec oneoff.Spec) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.createErr != nil {
		return "", r.createErr
	}
	r.seq++
	id := fmt.Sprintf("c%d", r.seq)
	r.containers[id] = &fakeContainer{labels: maps.Clone(spec.Labels), started: make(chan struct{})}
	return id, nil
}

func (r *fakeRuntime) Attach(_ context.Context, id string, _ bool) (oneoff.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	c.stream = newFakeStream()
	return c.stream, nil
}

func (r *fakeRuntime) Wait(_ context.Context, id string) <-chan oneoff.Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan oneoff.Exit, 1)
	if c, err := r.get(id); err != nil {
		ch <- oneoff.Exit{Err: err}
	} else {
		c.waiters = append(c.waiters, ch)
	}
	return ch
}

func (r *fakeRuntime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	c.running = true
	close(c.started)
	return nil
}

func (r *fakeRuntime) Resize(context.Context, string, oneoff.TermSize) error { return nil }
func (r *fakeRuntime) Signal(context.Context, string, string) error          { return nil }

func (r *fakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok && c.running {
		c.exit(143)
	}
	return nil
}

func (r *fakeRuntime) Remove(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok && c.running {
		c.exit(137)
	}
	delete(r.containers, id)
	return nil
}

func (r *fakeRuntime) List(_ context.Context, labels map[string]string) ([]oneoff.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []oneoff.Container
	for id, c := range r.containers {
		match := true
		for k, v := range labels {
			match = match && c.labels[k] == v
		}
		if match {
			out = append(out, oneoff.Container{ID: id, Labels: maps.Clone(c.labels), Running: c.running})
		}
	}
	return out, nil
}

// exit ends the process with code and its output.
func (c *fakeContainer) exit(code int) {
	c.running = false
	for _, w := range c.waiters {
		w <- oneoff.Exit{Code: code}
	}
	c.waiters = nil
	if c.stream != nil {
		c.stream.endOutput()
	}
}

// started waits until container id runs and returns its stream.
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
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.stream
}

// exit makes container id's process end with code.
func (r *fakeRuntime) exit(t *testing.T, id string, code int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	c.exit(code)
}

// fakeStream is a container's stdio: stdin is a pipe the test reads, and
// stdout is what the test feeds.
type fakeStream struct {
	stdin   *io.PipeReader
	stdinW  *io.PipeWriter
	out     chan []byte
	mu      sync.Mutex
	ended   bool
	closed  chan struct{}
	closing sync.Once
}

func newFakeStream() *fakeStream {
	r, w := io.Pipe()
	return &fakeStream{stdin: r, stdinW: w, out: make(chan []byte, 16), closed: make(chan struct{})}
}

func (s *fakeStream) Write(p []byte) (int, error) { return s.stdinW.Write(p) }
func (s *fakeStream) CloseWrite() error           { return s.stdinW.Close() }

func (s *fakeStream) CopyOutput(stdout, _ io.Writer) error {
	for {
		select {
		case p, ok := <-s.out:
			if !ok {
				return nil
			}
			if _, err := stdout.Write(p); err != nil {
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

// send feeds stdout.
func (s *fakeStream) send(data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	select {
	case s.out <- []byte(data):
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
	done := make(chan string, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(s.stdin, b)
		if err != nil {
			done <- "read error: " + err.Error()
			return
		}
		done <- string(b)
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(waitLimit):
		t.Fatalf("stdin did not get %d bytes", n)
		return ""
	}
}

// testApp is the app deployed by newHarness.
const testApp = "web"

// harness is a Manager on a fake runtime and a real store, with app "web"
// deployed.
type harness struct {
	rt      *fakeRuntime
	m       *oneoff.Manager
	deploys *deploy.Service
	log     *slog.Logger
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	deploys := deploy.NewService(db)
	if _, err := deploys.Deploy(context.Background(), testApp, deploy.Spec{Image: "registry.example.com/web:v1"}); err != nil {
		t.Fatal(err)
	}
	rt := newFakeRuntime()
	log := slog.New(slog.DiscardHandler)
	m := oneoff.NewManager(oneoff.Config{Instance: "test"}, rt, db, deploys, log)
	return &harness{rt: rt, m: m, deploys: deploys, log: log}
}
