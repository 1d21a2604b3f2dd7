package fakeruntime

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

var _ oneoff.Stream = (*Stream)(nil)

// Stream is an attached container's stdio: stdin is a pipe the test reads,
// and the output is what the test feeds.
type Stream struct {
	stdin   *io.PipeReader
	stdinW  *io.PipeWriter
	out     chan chunk
	onEnd   func() // called when CopyOutput returns
	mu      sync.Mutex
	ended   bool
	closed  chan struct{}
	closing sync.Once
}

// chunk is one piece of output, bound for stdout or stderr.
type chunk struct {
	stderr bool
	data   []byte
}

func newStream(onEnd func()) *Stream {
	r, w := io.Pipe()
	return &Stream{stdin: r, stdinW: w, out: make(chan chunk, 16), onEnd: onEnd, closed: make(chan struct{})}
}

// Write sends p to the container's stdin, for ReadStdin to read.
func (s *Stream) Write(p []byte) (int, error) { return s.stdinW.Write(p) }

// CloseWrite ends the container's stdin.
func (s *Stream) CloseWrite() error { return s.stdinW.Close() }

// CopyOutput copies what Send feeds until the output ends or the stream closes.
func (s *Stream) CopyOutput(stdout, stderr io.Writer) error {
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

// Close ends the attachment.
func (s *Stream) Close() error {
	s.closing.Do(func() {
		close(s.closed)
		s.stdin.CloseWithError(io.ErrClosedPipe)
	})
	return nil
}

// Send feeds output, to stderr or stdout; output sent after the end is dropped.
func (s *Stream) Send(stderr bool, data string) {
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

// EndOutput ends the output, as when the engine closes the attachment.
func (s *Stream) EndOutput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.out)
	}
}

// Stdin is the container's end of stdin, for the test to read.
func (s *Stream) Stdin() io.Reader { return s.stdin }

// ReadStdin reads n bytes of what the container got on stdin.
func (s *Stream) ReadStdin(t testing.TB, n int) string {
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
