package attach_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/attach"
)

// FuzzReadHello feeds the handshake parser arbitrary lines: it never
// panics, never reads past the bound, and what it accepts renders back to
// a line that parses to the same handshake.
func FuzzReadHello(f *testing.F) {
	for _, seed := range []string{
		"abc secret\n",
		"abc secret framed rows=24 cols=80\n",
		"abc secret rows=24 cols=80\r\n",
		"abc secret framed\n",
		"abc\n",
		"\n",
		"abc secret rows=0 cols=80\n",
		"abc secret rows=65536\n",
		"abc secret bogus\n",
		"abc secret",
		strings.Repeat("a", attach.MaxHelloLen+10) + "\n",
		"abc secret\x00 framed\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := attach.ReadHello(bufio.NewReaderSize(bytes.NewReader(in), 16))
		if err != nil {
			if !errors.Is(err, attach.ErrBadHello) && !errors.Is(err, io.EOF) {
				t.Fatalf("error %v is neither a bad handshake nor the end of input", err)
			}
			return
		}
		if h.ID == "" || h.Secret == "" || strings.ContainsAny(h.ID+h.Secret, " \t\r\n") {
			t.Fatalf("accepted a handshake with id %q, secret %q", h.ID, h.Secret)
		}
		if i := bytes.IndexByte(in, '\n'); i < 0 || i > attach.MaxHelloLen+1 {
			t.Fatalf("accepted a line of %d bytes", i)
		}
		again, err := attach.ReadHello(bufio.NewReader(strings.NewReader(h.String())))
		if err != nil {
			t.Fatalf("rendered handshake %q does not parse: %v", h.String(), err)
		}
		if again != h {
			t.Fatalf("round trip = %+v, want %+v", again, h)
		}
	})
}

// FuzzReadFrame feeds the frame reader arbitrary bytes: it never panics,
// never hands out a payload over the limit, and frames written by Writer
// read back as they were.
func FuzzReadFrame(f *testing.F) {
	var frames bytes.Buffer
	w := attach.NewWriter(&frames)
	_ = w.WriteFrame(attach.Stdin, []byte("ls -l\n"))
	_ = w.WriteFrame(attach.Resize, attach.EncodeSize(24, 80))
	_ = w.WriteFrame(attach.CloseStdin, nil)
	_ = w.WriteFrame(attach.Signal, []byte("INT"))
	f.Add(frames.Bytes(), []byte("payload"))
	f.Add([]byte{'i', 0, 0, 0, 5, 'a'}, []byte{})
	f.Add([]byte{'i', 0xff, 0xff, 0xff, 0xff}, []byte{0})
	f.Add([]byte{'x'}, bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, in, payload []byte) {
		r := attach.NewReader(bytes.NewReader(in))
		for {
			_, p, err := r.ReadFrame()
			if err != nil {
				break
			}
			if len(p) > attach.MaxFrameLen {
				t.Fatalf("payload of %d bytes is over the limit", len(p))
			}
		}
		if len(payload) > attach.MaxFrameLen {
			return
		}
		var buf bytes.Buffer
		if err := attach.NewWriter(&buf).WriteFrame(attach.Stdout, payload); err != nil {
			t.Fatal(err)
		}
		typ, p, err := attach.NewReader(&buf).ReadFrame()
		if err != nil || typ != attach.Stdout || !bytes.Equal(p, payload) {
			t.Fatalf("round trip = %q %q %v, want %q %q", typ, p, err, attach.Stdout, payload)
		}
	})
}

// FuzzDecodeSize checks that a resize payload either decodes or is refused.
func FuzzDecodeSize(f *testing.F) {
	f.Add(attach.EncodeSize(24, 80))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		rows, cols, err := attach.DecodeSize(p)
		if (err == nil) != (len(p) == 4) {
			t.Fatalf("payload of %d bytes: err %v", len(p), err)
		}
		if err == nil && !bytes.Equal(attach.EncodeSize(rows, cols), p) {
			t.Fatalf("round trip of %x failed", p)
		}
	})
}
