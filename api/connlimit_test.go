package api_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/api"
)

// serveHTTP serves h on a loopback port behind a ConnLimit of max.
func serveHTTP(t *testing.T, h http.Handler, max int) (addr string, reg *prometheus.Registry) {
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

// rawGet sends a keep-alive GET on a new connection and reads the answer's
// status line and headers; the connection stays open.
func rawGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
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

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
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
	addr, reg := serveHTTP(t, ok, 2)
	first, firstR := rawGet(t, addr, "/")
	rawGet(t, addr, "/")
	// Both places are held by idle keep-alive connections: a third client
	// still gets an answer, the idlest connection making room.
	rawGet(t, addr, "/")
	if _, err := firstR.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("the idlest connection: got %v, want it closed (EOF)", err)
	}
	first.Close()
	if got := metric(t, reg, "oneoffd_api_connections_shed_total"); got != 1 {
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
	rawGet(t, addr, "/")
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
	addr, _ := serveHTTP(t, busy, 1)
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

func TestWithTimeouts(t *testing.T) {
	tm := api.Timeouts{Body: 150 * time.Millisecond, Stall: 500 * time.Millisecond}
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream": // as a followed log: a line now and then, for longer than any deadline
			for i := 0; i < 8; i++ {
				io.WriteString(w, "line\n")
				w.(http.Flusher).Flush()
				time.Sleep(150 * time.Millisecond)
			}
		case "/body":
			_, err := io.ReadAll(r.Body)
			readErr <- err
		case "/flood": // a client that does not read
			buf := make([]byte, 1<<20)
			for {
				if _, err := w.Write(buf); err != nil {
					readErr <- err
					return
				}
			}
		}
	})
	addr, _ := serveHTTP(t, api.WithTimeouts(h, tm), 0)

	t.Run("a stream outlives the deadlines", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || strings.Count(string(b), "line\n") != 8 {
			t.Errorf("got %q, %v; want 8 lines", b, err)
		}
	})
	trickle := func(t *testing.T, contentType string, gap time.Duration) error {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /body HTTP/1.1\r\nHost: test\r\nContent-Type: "+contentType+"\r\nContent-Length: 6\r\n\r\n")
		for i := 0; i < 6; i++ {
			time.Sleep(gap)
			if _, err := io.WriteString(c, "x"); err != nil {
				break
			}
		}
		select {
		case err := <-readErr:
			return err
		case <-time.After(waitLimit):
			t.Fatal("the handler did not finish reading")
			return nil
		}
	}
	t.Run("a slow JSON body is cut", func(t *testing.T) {
		if err := trickle(t, "application/json", 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("got %v, want the read deadline exceeded", err)
		}
	})
	t.Run("an upload may take long while it moves", func(t *testing.T) {
		if err := trickle(t, "multipart/form-data; boundary=x", 150*time.Millisecond); err != nil {
			t.Errorf("got %v, want the body read whole", err)
		}
	})
	t.Run("an upload that stalls is cut", func(t *testing.T) {
		if err := trickle(t, "multipart/form-data; boundary=x", 1500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("got %v, want the read deadline exceeded", err)
		}
	})
	t.Run("a client that stops reading is let go", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /flood HTTP/1.1\r\nHost: test\r\n\r\n")
		select {
		case err := <-readErr:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("got %v, want the write deadline exceeded", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("the handler still writes to a client that does not read")
		}
	})
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
	rawGet(t, ln.Addr().String(), "/")
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v, want it still serving", err)
	default:
	}
	if got := metric(t, reg, "oneoffd_api_accept_errors_total"); got != 4 {
		t.Errorf("got %v accept errors counted, want 4", got)
	}
}
