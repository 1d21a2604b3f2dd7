package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/logs"
)

// appLogs streams an app's log: GET /v1/apps/{app}/logs?lines=&follow=&filter=&format=.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request) {
	app, err := s.deploys.App(r.Context(), chi.URLParam(r, "app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := logQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Source = r.URL.Query().Get("filter")
	if q.Source != "" {
		// The filter is a one-off's name, or its id; a name that no
		// record has any more may still have lines in the log.
		if o, err := s.oneoffs.Resolve(r.Context(), app.Name, q.Source); err == nil {
			q.Source = o.Name
		}
	}
	s.streamLogs(w, r, app.Name, q, nil)
}

// oneOffLogs streams a one-off's lines of its app's log; when following, the
// stream ends once the one-off has finished and its last line is sent.
func (s *Server) oneOffLogs(w http.ResponseWriter, r *http.Request) {
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := logQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Source = o.Name
	// Done is closed once it has finished, at once for one that had: a
	// follow of a finished one-off sends its lines and ends.
	s.streamLogs(w, r, o.App, q, s.oneoffs.Done(o.ID))
}

// logRequest is what a log request asks for.
type logRequest struct {
	logs.Query
	Follow bool
	JSON   bool
}

// logQuery reads lines=, follow= and format=.
func logQuery(r *http.Request) (logRequest, error) {
	var q logRequest
	v := r.URL.Query()
	switch s := v.Get("lines"); s {
	case "":
	case "all":
		q.FromStart = true
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > logs.MaxTailLines {
			return q, errdefs.Invalid("invalid_lines", "lines %q must be \"all\" or a whole number from 0 to %d", s, logs.MaxTailLines)
		}
		q.Lines = n
		if n == 0 {
			q.Lines = -1 // none of the past, only what comes
		}
	}
	if f := v.Get("follow"); f != "" {
		follow, err := strconv.ParseBool(f)
		if err != nil {
			return q, errdefs.Invalid("invalid_follow", "follow %q must be true or false", f)
		}
		q.Follow = follow
	}
	switch f := v.Get("format"); f {
	case "", "text":
	case "json":
		q.JSON = true
	default:
		return q, errdefs.Invalid("invalid_format", "format %q is unknown: use text or json", f)
	}
	return q, nil
}

// streamLogs writes the log as it comes: text lines ("TIME SOURCE STREAM:
// TEXT") or, with format=json, one JSON object per line. It flushes after
// every batch so that curl and browsers show lines as they arrive.
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, app string, q logRequest, until <-chan struct{}) {
	if q.JSON {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	// Browsers would otherwise wait for more bytes to sniff the type.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var buf []byte
	write := func(lines []logs.Line) error {
		buf = buf[:0]
		for _, l := range lines {
			buf = appendLine(buf, l, q.JSON)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.streams:
			cancel() // the daemon is shutting down
		case <-ctx.Done():
		}
	}()
	q.Until = until
	if !q.Follow && q.FromStart {
		// The whole log, streamed rather than held: follow it to its
		// present end.
		now := make(chan struct{})
		close(now)
		q.Follow, q.Until = true, now
	}
	var err error
	if q.Follow {
		err = s.logs.Follow(ctx, app, q.Query, write)
	} else {
		var lines []logs.Line
		if lines, err = s.logs.Tail(ctx, app, q.Query); err == nil && len(lines) > 0 {
			err = write(lines)
		}
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("log stream ended", "app", app, "err", err)
	}
	if flusher != nil {
		flusher.Flush()
	}
}

func appendLine(buf []byte, l logs.Line, asJSON bool) []byte {
	if asJSON {
		b, _ := json.Marshal(l)
		return append(append(buf, b...), '\n')
	}
	buf = l.Time.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000000Z07:00")
	buf = append(buf, ' ')
	buf = append(buf, l.Source...)
	buf = append(buf, ' ')
	buf = append(buf, l.Stream...)
	buf = append(buf, ": "...)
	buf = append(buf, strings.ReplaceAll(l.Text, "\n", `\n`)...)
	return append(buf, '\n')
}
