package oneoff

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
)

// DefaultRecordingMaxSize caps a session's recording.
const DefaultRecordingMaxSize = 64 << 20

// AuditRecord is the audit trail's action saying a session was recorded.
const AuditRecord = "record"

// recordingExt ends a recording's file name: asciicast v2.
const recordingExt = ".cast"

// recordingPath is where one-off id's recording is kept.
func (m *Manager) recordingPath(id string) string {
	return filepath.Join(m.cfg.RecordDir, id+recordingExt)
}

// Recording opens one-off id's recording, an asciicast v2 file.
func (m *Manager) Recording(id string) (*os.File, error) {
	if m.cfg.RecordDir == "" || !validID(id) {
		return nil, errdefs.NotFound("recording_not_found", "one-off %q has no recording: sessions are recorded only when the daemon runs with --record-sessions", id)
	}
	f, err := os.Open(m.recordingPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("recording_not_found", "one-off %q has no recording: it was not attached while the daemon recorded sessions, or its recording was pruned with its record", id)
	}
	return f, err
}

// HasRecording reports whether one-off id has a recording.
func (m *Manager) HasRecording(id string) bool {
	if m.cfg.RecordDir == "" || !validID(id) {
		return false
	}
	_, err := os.Stat(m.recordingPath(id))
	return err == nil
}

// validID reports whether id can name a file: the ids are base32.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'z') {
			return false
		}
	}
	return true
}

// pruneRecordings deletes the recordings last written before before, as
// the records they go with are.
func (m *Manager) pruneRecordings(before time.Time) (int, error) {
	if m.cfg.RecordDir == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(m.cfg.RecordDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list recordings: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range entries {
		if filepath.Ext(e.Name()) != recordingExt {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(m.cfg.RecordDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// record wraps conn so that what the terminal shows and what it sends are
// written to the one-off's recording, when sessions are recorded; done
// closes the recording and tells the audit trail.
func (s *Session) record(conn Conn, size TermSize) (Conn, func()) {
	m := s.m
	if m.cfg.RecordDir == "" {
		return conn, func() {}
	}
	rec := s.OneOff()
	if err := os.MkdirAll(m.cfg.RecordDir, 0o700); err != nil {
		m.log.Error("cannot record the session", "oneoff", rec.ID, "err", err)
		return conn, func() {}
	}
	f, err := os.OpenFile(m.recordingPath(rec.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		m.log.Error("cannot record the session", "oneoff", rec.ID, "err", err)
		return conn, func() {}
	}
	max := m.cfg.RecordingMaxSize
	if max <= 0 {
		max = DefaultRecordingMaxSize
	}
	if size.IsZero() {
		size = TermSize{Rows: 24, Cols: 80}
	}
	r := &recorder{Conn: conn, f: f, w: bufio.NewWriterSize(f, 64<<10), start: m.cfg.Now(), now: m.cfg.Now, max: max}
	hdr, _ := json.Marshal(map[string]any{
		"version": 2, "width": size.Cols, "height": size.Rows, "timestamp": r.start.Unix(),
		"title": rec.Name + " (" + rec.App + ")",
	})
	r.line(hdr)
	r.end = func() {
		size, err := r.close()
		if err != nil {
			m.log.Warn("write the session's recording failed", "oneoff", rec.ID, "err", err)
		}
		detail := "session recorded, " + humanize.IBytes(uint64(size))
		if r.truncated {
			detail += fmt.Sprintf(" (cut at the %s cap)", humanize.IBytes(uint64(max)))
		}
		m.audit(rec, AuditRecord, ActorDaemon, detail)
	}
	return r, func() { r.once.Do(r.end) }
}

// Finish completes the recording before the terminal hears of the end, so
// that it can be played as soon as the CLI exits.
func (r *recorder) Finish(res Result) {
	r.once.Do(r.end)
	r.Conn.Finish(res)
}

// recorder writes an asciicast v2 recording of a session: output ("o"),
// input ("i") and window sizes ("r"), each with its time since the start.
type recorder struct {
	Conn
	f     *os.File
	now   func() time.Time
	start time.Time
	max   int64
	once  sync.Once
	end   func()

	mu        sync.Mutex
	closed    bool
	w         *bufio.Writer
	size      int64
	carry     []byte // the start of a UTF-8 sequence the next output ends
	truncated bool
	err       error
}

func (r *recorder) line(b []byte) {
	if r.err != nil || r.truncated || r.closed {
		return
	}
	if r.size+int64(len(b))+1 > r.max {
		r.truncated = true
		marker, _ := json.Marshal([]any{r.elapsed(), "m", "recording cut: it reached its size cap"})
		_, r.err = r.w.Write(append(marker, '\n'))
		return
	}
	_, r.err = r.w.Write(append(b, '\n'))
	r.size += int64(len(b)) + 1
}

func (r *recorder) elapsed() float64 {
	return math.Round(r.now().Sub(r.start).Seconds()*1e6) / 1e6
}

// event records data of kind code, keeping an unfinished UTF-8 sequence
// for the next output, since asciicast events are strings.
func (r *recorder) event(code string, data []byte, split bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if split {
		data = append(r.carry, data...)
		r.carry = nil
		if cut := incompleteTail(data); cut > 0 {
			r.carry = append([]byte(nil), data[len(data)-cut:]...)
			data = data[:len(data)-cut]
		}
	}
	if len(data) == 0 {
		return
	}
	b, _ := json.Marshal([]any{r.elapsed(), code, string(data)})
	r.line(b)
}

// incompleteTail is how many bytes at the end of p begin a UTF-8 sequence
// that p does not finish.
func incompleteTail(p []byte) int {
	for n := 1; n <= 3 && n <= len(p); n++ {
		c := p[len(p)-n]
		if c < 0x80 {
			return 0 // ASCII: complete
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(p[len(p)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}

func (r *recorder) close() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.carry) > 0 {
		b, _ := json.Marshal([]any{r.elapsed(), "o", string(r.carry)})
		r.carry = nil
		r.line(b)
	}
	r.closed = true
	err := errors.Join(r.err, r.w.Flush(), r.f.Close())
	return r.size, err
}

// Next records what the terminal sends.
func (r *recorder) Next() (Input, error) {
	in, err := r.Conn.Next()
	if err == nil {
		switch in.Kind {
		case InputData:
			r.event("i", in.Data, false)
		case InputResize:
			r.event("r", []byte(fmt.Sprintf("%dx%d", in.Size.Cols, in.Size.Rows)), false)
		}
	}
	return in, err
}

// Stdout and Stderr record what the terminal shows.
func (r *recorder) Stdout() io.Writer { return recordWriter{r: r, w: r.Conn.Stdout()} }
func (r *recorder) Stderr() io.Writer { return recordWriter{r: r, w: r.Conn.Stderr()} }

type recordWriter struct {
	r *recorder
	w io.Writer
}

func (w recordWriter) Write(p []byte) (int, error) {
	w.r.event("o", p, true)
	return w.w.Write(p)
}
