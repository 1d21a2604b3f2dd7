package api

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// listenerWait bounds every wait for something that should happen at once.
const listenerWait = 5 * time.Second

// flakyListener fails its first Accepts with errs, then accepts from ln.
type flakyListener struct {
	net.Listener
	mu       sync.Mutex
	errs     []error
	accepted chan net.Conn
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err == nil && l.accepted != nil {
		l.accepted <- c
	}
	return c, err
}

// serveAttach runs an AttachServer without sessions on ln and stops it
// when the test ends.
func serveAttach(t *testing.T, ln net.Listener, cfg AttachConfig) (*AttachServer, chan error) {
	t.Helper()
	srv := NewAttachServer(nil, slog.New(slog.DiscardHandler), cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		select {
		case <-served:
		case <-time.After(listenerWait):
			t.Error("Serve did not return after Close")
		}
	})
	return srv, served
}

// listenLoopback listens on a free loopback port.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// dialAttach connects to addr, sends send, and bounds the connection by
// listenerWait.
func dialAttach(t *testing.T, addr, send string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(listenerWait))
	if send != "" {
		if _, err := c.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
	}
	return c, bufio.NewReader(c)
}

func TestAttachServer_Serve_temporaryErrors(t *testing.T) {
	temporary := []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENOBUFS)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENOMEM)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)},
	}
	errs := temporary
	reg := prometheus.NewRegistry()
	ln := &flakyListener{Listener: listenLoopback(t), errs: errs}
	srv, served := serveAttach(t, ln, AttachConfig{Metrics: reg})

	// The endpoint survived them all and answers a handshake.
	_, br := dialAttach(t, ln.Addr().String(), "x\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ERR bad_handshake ") {
		t.Fatalf("got %q, %v; want a bad_handshake refusal", line, err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v, want it still serving", err)
	default:
	}
	if got, want := testutil.ToFloat64(srv.met.acceptErrors), float64(len(errs)); got != want {
		t.Errorf("got %v accept errors counted, want %v", got, want)
	}
}

func TestAttachServer_Serve_permanentError(t *testing.T) {
	broken := errors.New("listener broken")
	ln := &flakyListener{Listener: listenLoopback(t), errs: []error{broken}}
	_, served := serveAttach(t, ln, AttachConfig{})
	select {
	case err := <-served:
		if !errors.Is(err, broken) {
			t.Errorf("Serve returned %v, want %v", err, broken)
		}
		served <- err // for the clean-up
	case <-time.After(listenerWait):
		t.Fatal("Serve goes on after a permanent error")
	}
}

func TestTemporaryAcceptError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{syscall.ECONNABORTED, true},
		{os.ErrDeadlineExceeded, true},
		{syscall.EBADF, false},
		{net.ErrClosed, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := temporaryAcceptError(tt.err); got != tt.want {
			t.Errorf("temporaryAcceptError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestAttachServer_Serve_pendingCaps(t *testing.T) {
	tests := []struct {
		name              string
		max, perClient    int
		wantKept          int
		wantReason        string
		wantOtherReason   string
		otherRefusedCount float64
	}{
		{name: "per client", max: 10, perClient: 3, wantKept: 3, wantReason: refusedPendingPerClient, wantOtherReason: refusedPending},
		{name: "overall", max: 2, perClient: 5, wantKept: 2, wantReason: refusedPending, wantOtherReason: refusedPendingPerClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listenLoopback(t)
			srv, _ := serveAttach(t, ln, AttachConfig{MaxPending: tt.max, MaxPendingPerClient: tt.perClient})
			addr := ln.Addr().String()
			// Silent connections: they never send a handshake.
			for i := 0; i < tt.wantKept; i++ {
				dialAttach(t, addr, "")
			}
			waitUntil(t, func() bool { return testutil.ToFloat64(srv.met.pending) == float64(tt.wantKept) })
			for i := 0; i < 3; i++ {
				_, br := dialAttach(t, addr, "")
				line, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "ERR "+tt.wantReason+" ") {
					t.Fatalf("connection over the cap: got %q, %v; want ERR %s", line, err, tt.wantReason)
				}
				if _, err := br.ReadByte(); err == nil {
					t.Errorf("connection over the cap: still open after the refusal")
				}
			}
			if got := testutil.ToFloat64(srv.met.refused.WithLabelValues(tt.wantReason)); got != 3 {
				t.Errorf("got %v refusals counted as %s, want 3", got, tt.wantReason)
			}
			if got := testutil.ToFloat64(srv.met.refused.WithLabelValues(tt.wantOtherReason)); got != 0 {
				t.Errorf("got %v refusals counted as %s, want 0", got, tt.wantOtherReason)
			}
		})
	}

	t.Run("another client makes room", func(t *testing.T) {
		ln := listenLoopback(t)
		srv, _ := serveAttach(t, ln, AttachConfig{MaxPending: 3, MaxPendingPerClient: 3})
		addr := ln.Addr().String()
		other := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		var first net.Conn
		for i := 0; i < 3; i++ {
			c, err := other.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if first == nil {
				first = c
			}
			waitUntil(t, func() bool { return testutil.ToFloat64(srv.met.pending) == float64(i+1) })
		}
		dialAttach(t, addr, "") // from 127.0.0.1, while 127.0.0.2 holds every place
		_ = first.SetReadDeadline(time.Now().Add(listenerWait))
		line, err := bufio.NewReader(first).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "ERR "+refusedEvicted+" ") {
			t.Fatalf("the oldest connection of the heaviest client: got %q, %v; want ERR %s", line, err, refusedEvicted)
		}
		waitUntil(t, func() bool { return testutil.ToFloat64(srv.met.pending) == 3 })
		if got := testutil.ToFloat64(srv.met.refused.WithLabelValues(refusedEvicted)); got != 1 {
			t.Errorf("got %v evictions counted, want 1", got)
		}
	})

	t.Run("a handshake gives its place back", func(t *testing.T) {
		ln := listenLoopback(t)
		srv, _ := serveAttach(t, ln, AttachConfig{MaxPending: 1, MaxPendingPerClient: 1})
		addr := ln.Addr().String()
		for i := 0; i < 3; i++ {
			_, br := dialAttach(t, addr, "bad\n")
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "ERR bad_handshake ") {
				t.Fatalf("handshake %d: got %q, %v; want bad_handshake, not a cap", i, line, err)
			}
			waitUntil(t, func() bool { return testutil.ToFloat64(srv.met.pending) == 0 })
		}
	})
}

// testConn is a connection that is only compared.
type testConn struct {
	net.Conn
	name string
}

func TestPendingLimit(t *testing.T) {
	p := pendingLimit{max: 3, perClient: 2, byClient: map[string][]net.Conn{}}
	conn := map[string]net.Conn{}
	for _, n := range []string{"a1", "a2", "a3", "b1", "c1", "d1"} {
		conn[n] = &testConn{name: n}
	}
	steps := []struct {
		client, conn string
		want         string
		wantEvicted  string
	}{
		{"a", "a1", "", ""},
		{"a", "a2", "", ""},
		{"a", "a3", refusedPendingPerClient, ""},
		{"b", "b1", "", ""},
		{"c", "c1", "", "a1"}, // full: the heaviest client's oldest makes room
		{"d", "d1", refusedPending, ""},
	}
	for _, s := range steps {
		got, evicted := p.admit(s.client, conn[s.conn])
		if got != s.want {
			t.Fatalf("admit %s: got %q, want %q", s.conn, got, s.want)
		}
		name := ""
		if evicted != nil {
			name = evicted.(*testConn).name
		}
		if name != s.wantEvicted {
			t.Fatalf("admit %s: evicted %q, want %q", s.conn, name, s.wantEvicted)
		}
	}
	if p.release("a", conn["a1"]) {
		t.Error("the evicted connection still held a place")
	}
	if !p.release("a", conn["a2"]) {
		t.Error("a2 held no place")
	}
	if got, _ := p.admit("d", conn["d1"]); got != "" {
		t.Errorf("after a release: admit = %q, want a place", got)
	}
	for _, r := range []struct{ client, conn string }{{"b", "b1"}, {"c", "c1"}, {"d", "d1"}} {
		p.release(r.client, conn[r.conn])
	}
	if p.total != 0 || len(p.byClient) != 0 {
		t.Errorf("after releasing all: total %d, clients %v; want none", p.total, p.byClient)
	}
}

func TestClientHost(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4242}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 4242}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 4242}, "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		if got := clientHost(tt.addr); got != tt.want {
			t.Errorf("clientHost(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestAttachServer_Serve_keepAlive(t *testing.T) {
	inner := listenLoopback(t)
	ln := &flakyListener{Listener: inner, accepted: make(chan net.Conn, 1)}
	serveAttach(t, ln, AttachConfig{KeepAlive: 7 * time.Second})
	dialAttach(t, ln.Addr().String(), "")
	var c net.Conn
	select {
	case c = <-ln.accepted:
	case <-time.After(listenerWait):
		t.Fatal("no connection accepted")
	}
	want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 7, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 28000}
	waitUntil(t, func() bool { return fmt.Sprint(sockopts(t, c)) == fmt.Sprint(want) })
}

// sockopts reads c's keepalive options.
func sockopts(t *testing.T, c net.Conn) map[string]int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	_ = raw.Control(func(fd uintptr) {
		for name, opt := range map[string][2]int{
			"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
			"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
			"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		} {
			v, err := unix.GetsockoptInt(int(fd), opt[0], opt[1])
			if err != nil {
				t.Errorf("getsockopt %s: %v", name, err)
			}
			got[name] = v
		}
	})
	return got
}

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(listenerWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
