package oneoff_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

// waitLimit bounds every wait of these tests for something that should
// happen at once; only a broken test reaches it.
const waitLimit = 5 * time.Second

var _ oneoff.Conn = (*fakeConn)(nil)

// fakeConn is the user's end of a session: the test sends input and reads
// what the user was shown.
type fakeConn struct {
	in      chan oneoff.Input
	gone    chan struct{}
	leaving sync.Once
	stdout  testenv.Buffer
	stderr  testenv.Buffer
	notices testenv.Buffer
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

func (c *fakeConn) Notify(msg string) { c.notices.Write([]byte(msg + "\n")) }

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

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
