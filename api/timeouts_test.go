package api_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/api"
)

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
	addr, _ := serveLimited(t, api.WithTimeouts(h, tm), 0)

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
