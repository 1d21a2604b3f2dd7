package api

import (
	"io"
	"mime"
	"net/http"
	"time"
)

// Timeouts bound how long the API waits on a client. The http.Server's own
// ReadTimeout and WriteTimeout are absolute, so they would cut a followed
// log or a large upload short; these are per request and, where a request
// streams, they bound a stall rather than the whole exchange.
type Timeouts struct {
	// Body is how long a request body other than an upload may take to
	// arrive whole (JSON bodies are small).
	Body time.Duration
	// Stall is the longest an upload's body may go without a byte, and the
	// longest any write to the client may take: a client that stops
	// reading a followed log is let go after it.
	Stall time.Duration
}

// Defaults of Timeouts and of the daemon's http.Server.
const (
	DefaultBodyTimeout       = 30 * time.Second
	DefaultStallTimeout      = time.Minute
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// WithTimeouts puts t's deadlines on every request h serves.
func WithTimeouts(h http.Handler, t Timeouts) http.Handler {
	if t.Body <= 0 {
		t.Body = DefaultBodyTimeout
	}
	if t.Stall <= 0 {
		t.Stall = DefaultStallTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if websocketUpgrade(r) {
			// The attach WebSocket is a terminal: it lives as long as the
			// session, which bounds its stalls itself.
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			h.ServeHTTP(w, r)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			body := &deadlineBody{ReadCloser: r.Body, rc: rc}
			if mt == "multipart/form-data" {
				body.stall = t.Stall
			} else {
				_ = rc.SetReadDeadline(time.Now().Add(t.Body))
			}
			r.Body = body
		}
		// Also for what the server writes itself, such as headers without
		// a body and the last flush after the handler returns: a deadline
		// left from the connection's previous request must not apply.
		_ = rc.SetWriteDeadline(time.Now().Add(t.Stall))
		defer func() { _ = rc.SetWriteDeadline(time.Now().Add(t.Stall)) }()
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, stall: t.Stall}, r)
	})
}

// deadlineBody moves an upload's read deadline on at each read, and lifts
// the deadline once the body has been read: net/http then watches the
// connection for the client's close, and a deadline passing would cancel
// the request.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration // zero: the deadline set at the start stays
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.stall > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.stall))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineWriter gives each write to the client Stall to complete.
type deadlineWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	return w.ResponseWriter.Write(p)
}

// Flush sends what is buffered, for the log streams.
func (w *deadlineWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
