// Package attach is the wire protocol of the attach endpoint, spoken by the
// daemon and by the CLI: a one-line handshake carrying the one-off's id and
// secret, then either the raw terminal stream or typed frames that also
// carry window sizes, the end of stdin, signals and the exit status.
//
// docs/attach-protocol.md describes it for people and other clients.
package attach

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// MaxHelloLen bounds the handshake line.
const MaxHelloLen = 4096

// MaxFrameLen bounds a frame's payload.
const MaxFrameLen = 1 << 20

// Hello is the client's handshake.
type Hello struct {
	ID     string
	Secret string
	// Framed asks for typed frames instead of the raw stream.
	Framed bool
	// Rows and Cols are the terminal's initial size, if known.
	Rows, Cols uint16
	// Resumable asks for a resume token in the OK reply (framed mode).
	Resumable bool
	// Resume makes this a reconnect: Secret is then a resume token, and
	// From the count of output bytes the client has already received, or
	// FromLive (-1) for the output from now on.
	Resume bool
	From   int64
}

// String renders h as its handshake line, newline included.
func (h Hello) String() string {
	var b strings.Builder
	b.WriteString(h.ID + " " + h.Secret)
	if h.Framed {
		b.WriteString(" framed")
	}
	if h.Rows > 0 && h.Cols > 0 {
		fmt.Fprintf(&b, " rows=%d cols=%d", h.Rows, h.Cols)
	}
	b.WriteString(h.resumeOptions())
	b.WriteByte('\n')
	return b.String()
}

// ErrBadHello is a handshake line that does not parse.
var ErrBadHello = errors.New("bad handshake")

// ReadHello reads and parses the handshake line.
func ReadHello(r *bufio.Reader) (Hello, error) {
	line, err := readLine(r)
	if err != nil {
		return Hello{}, err
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return Hello{}, fmt.Errorf("%w: want \"ID SECRET [framed] [rows=N cols=N]\"", ErrBadHello)
	}
	h := Hello{ID: fields[0], Secret: fields[1]}
	for _, opt := range fields[2:] {
		key, val, _ := strings.Cut(opt, "=")
		switch key {
		case "framed":
			h.Framed = true
		case "resumable", "resume":
			if err := h.parseResume(key, val); err != nil {
				return Hello{}, err
			}
		case "rows", "cols":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil || n == 0 {
				return Hello{}, fmt.Errorf("%w: %s must be a number from 1 to 65535", ErrBadHello, key)
			}
			if key == "rows" {
				h.Rows = uint16(n)
			} else {
				h.Cols = uint16(n)
			}
		default:
			return Hello{}, fmt.Errorf("%w: unknown option %q", ErrBadHello, opt)
		}
	}
	if (h.Rows == 0) != (h.Cols == 0) {
		return Hello{}, fmt.Errorf("%w: rows and cols go together: give both or neither", ErrBadHello)
	}
	if (h.Resume || h.Resumable) && !h.Framed {
		return Hello{}, fmt.Errorf("%w: resumable and resume need framed mode", ErrBadHello)
	}
	return h, nil
}

func readLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxHelloLen+1 {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrBadHello, MaxHelloLen)
		}
		switch {
		case err == nil:
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if len(line) > MaxHelloLen {
				return "", fmt.Errorf("%w: line longer than %d bytes", ErrBadHello, MaxHelloLen)
			}
			return string(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return "", fmt.Errorf("%w: line not ended by a newline", ErrBadHello)
		}
		return "", err
	}
}

// RefusedError is the daemon's refusal of a handshake.
type RefusedError struct {
	Code    string
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

// WriteOK accepts a framed handshake, naming the one-off.
func WriteOK(w io.Writer, name string) error {
	_, err := io.WriteString(w, "OK "+name+"\n")
	return err
}

// WriteRefused refuses a handshake with a stable code and a message.
func WriteRefused(w io.Writer, code, message string) error {
	message = strings.ReplaceAll(message, "\n", " ")
	_, err := io.WriteString(w, "ERR "+code+" "+message+"\n")
	return err
}

// ReadReply reads the daemon's answer to a framed handshake: the one-off's
// name, or a *RefusedError.
func ReadReply(r *bufio.Reader) (string, error) {
	a, err := ReadAccept(r)
	return a.Name, err
}

// FrameType says what a frame carries.
type FrameType byte

// The frame types. Lowercase letters, so that a capture reads easily.
const (
	// Client to daemon.
	Stdin      FrameType = 'i' // bytes for the container's stdin
	Resize     FrameType = 'w' // window size: rows, cols as big-endian uint16
	CloseStdin FrameType = 'c' // end of stdin, no payload
	Signal     FrameType = 's' // a signal name, e.g. "INT"
	Ack        FrameType = 'a' // output bytes received so far, a big-endian uint64

	// Daemon to client.
	Stdout  FrameType = 'o' // the container's stdout (all output with a TTY)
	Stderr  FrameType = 'e' // the container's stderr
	Exit    FrameType = 'x' // the end, a JSON ExitStatus; the last frame
	Message FrameType = 'm' // a notice for the user, UTF-8 text
)

// ExitStatus is the payload of the Exit frame.
type ExitStatus struct {
	// Outcome is how the one-off ended: exited, stopped, idle_timeout,
	// disconnected, failed, lost.
	Outcome  string `json:"outcome"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
}

// EncodeExit renders an Exit frame's payload.
func EncodeExit(s ExitStatus) []byte {
	b, _ := json.Marshal(s)
	return b
}

// DecodeExit parses an Exit frame's payload.
func DecodeExit(p []byte) (ExitStatus, error) {
	var s ExitStatus
	if err := json.Unmarshal(p, &s); err != nil {
		return s, fmt.Errorf("decode exit frame: %w", err)
	}
	return s, nil
}

// EncodeSize renders a Resize frame's payload.
func EncodeSize(rows, cols uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, rows)
	binary.BigEndian.PutUint16(b[2:], cols)
	return b
}

// DecodeSize parses a Resize frame's payload.
func DecodeSize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame has %d bytes, want 4", len(p))
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), nil
}

const headerLen = 5

// Writer writes frames; it is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteFrame writes one frame, splitting payloads over MaxFrameLen.
func (w *Writer) WriteFrame(t FrameType, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		n := min(len(p), MaxFrameLen)
		var hdr [headerLen]byte
		hdr[0] = byte(t)
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		bufs := net.Buffers{hdr[:], p[:n]}
		if _, err := bufs.WriteTo(w.w); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// StreamWriter returns an io.Writer whose writes become frames of type t.
func (w *Writer) StreamWriter(t FrameType) io.Writer {
	return frameStream{w: w, t: t}
}

type frameStream struct {
	w *Writer
	t FrameType
}

func (s frameStream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.w.WriteFrame(s.t, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Reader reads frames.
type Reader struct {
	r   io.Reader
	buf []byte
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// ReadFrame reads the next frame. The payload is valid until the next call.
func (r *Reader) ReadFrame() (FrameType, []byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrameLen {
		return 0, nil, fmt.Errorf("frame of %d bytes is over the %d-byte limit", n, MaxFrameLen)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameType(hdr[0]), p, nil
}
