package attach

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FromLive is the Hello.From of a reconnect that wants the output from now
// on rather than from a count of bytes, as a second terminal joining.
const FromLive = -1

// parseResume reads the resumable and resume=N|live options.
func (h *Hello) parseResume(key, val string) error {
	if key == "resumable" {
		if val != "" {
			return fmt.Errorf("%w: resumable takes no value", ErrBadHello)
		}
		h.Resumable = true
		return nil
	}
	h.Resume = true
	if val == "live" {
		h.From = FromLive
		return nil
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%w: resume wants the count of output bytes received, or live", ErrBadHello)
	}
	h.From = n
	return nil
}

// resumeOptions renders the resume options of h, with a leading space.
func (h Hello) resumeOptions() string {
	switch {
	case h.Resume && h.From < 0:
		return " resume=live"
	case h.Resume:
		return " resume=" + strconv.FormatInt(h.From, 10)
	case h.Resumable:
		return " resumable"
	}
	return ""
}

// Accept is the daemon's acceptance of a framed handshake.
type Accept struct {
	// Name is the one-off's name.
	Name string
	// Token, when the client asked for it, is the resume token of the next
	// reconnect; each accepted reconnect issues a new one and refuses the
	// old.
	Token string
}

// WriteAccept accepts a framed handshake: "OK NAME [token=TOKEN]".
func WriteAccept(w io.Writer, a Accept) error {
	line := "OK " + a.Name
	if a.Token != "" {
		line += " token=" + a.Token
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// ReadAccept reads the daemon's answer to a framed handshake: its
// acceptance, or a *RefusedError.
func ReadAccept(r *bufio.Reader) (Accept, error) {
	line, err := readLine(r)
	if err != nil {
		return Accept{}, fmt.Errorf("read handshake reply: %w", err)
	}
	if rest, ok := strings.CutPrefix(line, "OK "); ok {
		return parseAccept(rest), nil
	}
	if rest, ok := strings.CutPrefix(line, "ERR "); ok {
		code, msg, _ := strings.Cut(rest, " ")
		return Accept{}, &RefusedError{Code: code, Message: msg}
	}
	return Accept{}, fmt.Errorf("unexpected handshake reply %q", line)
}

// parseAccept reads what follows "OK ": the name, then options that an
// older client skips.
func parseAccept(rest string) Accept {
	fields := strings.Fields(rest)
	var a Accept
	if len(fields) > 0 {
		a.Name = fields[0]
	}
	for _, f := range fields[min(len(fields), 1):] {
		if tok, ok := strings.CutPrefix(f, "token="); ok {
			a.Token = tok
		}
	}
	return a
}

// EncodeAck renders an Ack frame's payload: the count of output bytes
// (stdout and stderr payloads) the client has received since the session
// began.
func EncodeAck(n int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(n))
}

// DecodeAck parses an Ack frame's payload.
func DecodeAck(p []byte) (int64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("ack frame has %d bytes, want 8", len(p))
	}
	n := binary.BigEndian.Uint64(p)
	if n > 1<<62 {
		return 0, fmt.Errorf("ack of %d bytes is out of range", n)
	}
	return int64(n), nil
}
