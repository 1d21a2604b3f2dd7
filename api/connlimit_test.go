package api_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/api"
)

// serveLimited serves h on a loopback port behind a ConnLimit of max.
func serveLimited(t *testing.T, h http.Handler, max int) (addr string, reg *prometheus.Registry) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg = prometheus.NewRegistry()
	limit := api.NewConnLimit(ln, max, slog.New(slog.DiscardHandler), reg)
	srv := &http.Server{Handler: h, ConnState: limit.ConnState, ReadHeaderTimeout: waitLimit}
	go func() { _ = srv.Serve(limit) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), reg
}

// keepAliveGet sends a keep-alive GET on a new connection and reads the answer's
// status line and headers; the connection stays open.
func keepAliveGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return c, br
}

// waitGathered waits until metric name in reg has the value want.
func waitGathered(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for gathered(t, reg, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s, want %v", name, gathered(t, reg, name), waitLimit, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gathered returns the value of the first series of metric name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestConnLimit_shedsIdle(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr, reg := serveLimited(t, ok, 2)
	// The server marks a connection idle once it has written the answer,
	// which the client may read first: wait for each, so that the first
	// is the idlest however the server's goroutines are scheduled.
	first, firstR := keepAliveGet(t, addr, "/")
	waitGathered(t, reg, "oneoffd_api_connections_idle", 1)
	keepAliveGet(t, addr, "/")
	waitGathered(t, reg, "oneoffd_api_connections_idle", 2)
	// Both places are held by idle keep-alive connections: a third client
	// still gets an answer, the idlest connection making room.
	keepAliveGet(t, addr, "/")
	if _, err := firstR.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("the idlest connection: got %v, want it closed (EOF)", err)
	}
	first.Close()
	if got := gathered(t, reg, "oneoffd_api_connections_shed_total"); got != 1 {
		t.Errorf("got %v connections shed, want 1", got)
	}
	// Silent connections, which never sent a request, are idle too.
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	keepAliveGet(t, addr, "/")
}

func TestConnLimit_waitsWhenAllBusy(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	busy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok")
	})
	addr, _ := serveLimited(t, busy, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /busy HTTP/1.1\r\nHost: test\r\n\r\n")
	<-entered
	got := make(chan struct{})
	go func() {
		defer close(got)
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-got:
		t.Fatal("a request was served past the cap while the only connection was busy")
	case <-time.After(100 * time.Millisecond):
	}
	close(release) // the busy request ends; its connection goes idle and makes room
	select {
	case <-got:
	case <-time.After(waitLimit):
		t.Fatal("the waiting request was not served once a place was free")
	}
}

// failingListener fails its first Accepts with errs.
type failingListener struct {
	net.Listener
	errs chan error
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
		return l.Listener.Accept()
	}
}

func TestConnLimit_temporaryErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	failing := &failingListener{Listener: ln, errs: make(chan error, 8)}
	// net/http retries EMFILE by itself but gives up on ENOBUFS and ENOMEM.
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ENFILE} {
		failing.errs <- &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
	}
	reg := prometheus.NewRegistry()
	limit := api.NewConnLimit(failing, 0, slog.New(slog.DiscardHandler), reg)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: limit.ConnState}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(limit) }()
	defer srv.Close()
	keepAliveGet(t, ln.Addr().String(), "/")
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v, want it still serving", err)
	default:
	}
	if got := gathered(t, reg, "oneoffd_api_accept_errors_total"); got != 4 {
		t.Errorf("got %v accept errors counted, want 4", got)
	}
}
