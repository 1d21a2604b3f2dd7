package attach_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/oneoffd/oneoffd/attach"
)

func reader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func TestHello_String(t *testing.T) {
	tests := []struct {
		name  string
		hello attach.Hello
		want  string
	}{
		{name: "raw", hello: attach.Hello{ID: "id1", Secret: "s3cret"}, want: "id1 s3cret\n"},
		{name: "framed", hello: attach.Hello{ID: "id1", Secret: "s3cret", Framed: true}, want: "id1 s3cret framed\n"},
		{name: "framed with a size", hello: attach.Hello{ID: "id1", Secret: "s", Framed: true, Rows: 24, Cols: 80},
			want: "id1 s framed rows=24 cols=80\n"},
		{name: "raw with a size", hello: attach.Hello{ID: "id1", Secret: "s", Rows: 65535, Cols: 1},
			want: "id1 s rows=65535 cols=1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := tt.hello.String()
			if line != tt.want {
				t.Errorf("got %q, want %q", line, tt.want)
			}
			got, err := attach.ReadHello(reader(line))
			if err != nil {
				t.Fatalf("ReadHello: %v", err)
			}
			if got != tt.hello {
				t.Errorf("got %+v back, want %+v", got, tt.hello)
			}
		})
	}
}

func TestReadHello(t *testing.T) {
	t.Run("accepts", func(t *testing.T) {
		tests := []struct {
			name string
			line string
			want attach.Hello
		}{
			{name: "extra spaces", line: "  id   secret   framed \n", want: attach.Hello{ID: "id", Secret: "secret", Framed: true}},
			{name: "CRLF", line: "id secret\r\n", want: attach.Hello{ID: "id", Secret: "secret"}},
			{name: "options in any order", line: "id s cols=80 framed rows=24\n",
				want: attach.Hello{ID: "id", Secret: "s", Framed: true, Rows: 24, Cols: 80}},
			{name: "line at the limit", line: "id " + strings.Repeat("s", attach.MaxHelloLen-3) + "\n",
				want: attach.Hello{ID: "id", Secret: strings.Repeat("s", attach.MaxHelloLen-3)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := attach.ReadHello(reader(tt.line))
				if err != nil {
					t.Fatalf("ReadHello: %v", err)
				}
				if got != tt.want {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			})
		}
	})

	t.Run("leaves what follows the line", func(t *testing.T) {
		r := reader("id secret\nstdin bytes")
		if _, err := attach.ReadHello(r); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(r)
		if got, want := string(rest), "stdin bytes"; got != want {
			t.Errorf("got %q after the line, want %q", got, want)
		}
	})

	t.Run("refuses", func(t *testing.T) {
		tests := []struct {
			name string
			line string
		}{
			{name: "empty line", line: "\n"},
			{name: "missing secret", line: "id\n"},
			{name: "unknown option", line: "id secret bogus\n"},
			{name: "unknown key", line: "id secret height=3\n"},
			{name: "zero rows", line: "id secret rows=0 cols=80\n"},
			{name: "rows not a number", line: "id secret rows=abc cols=80\n"},
			{name: "rows over 65535", line: "id secret rows=65536 cols=80\n"},
			{name: "negative cols", line: "id secret rows=24 cols=-1\n"},
			{name: "rows without a value", line: "id secret rows\n"},
			{name: "over-long line", line: "id " + strings.Repeat("s", attach.MaxHelloLen-2) + "\n"},
			{name: "very long line", line: "id " + strings.Repeat("s", 3*attach.MaxHelloLen) + "\n"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := attach.ReadHello(reader(tt.line))
				if !errors.Is(err, attach.ErrBadHello) {
					t.Errorf("got %v, want ErrBadHello", err)
				}
			})
		}
	})

	t.Run("refuses a line without a newline", func(t *testing.T) {
		h, err := attach.ReadHello(reader("id secret"))
		if !errors.Is(err, attach.ErrBadHello) {
			t.Errorf("got ID %q, secret %q, error %v for a line cut short by EOF, want ErrBadHello", h.ID, h.Secret, err)
		}
	})

	t.Run("nothing at all", func(t *testing.T) {
		_, err := attach.ReadHello(reader(""))
		if !errors.Is(err, io.EOF) {
			t.Errorf("got %v, want io.EOF", err)
		}
	})
}

func TestReadReply(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		var b bytes.Buffer
		if err := attach.WriteOK(&b, "one-off-1234"); err != nil {
			t.Fatal(err)
		}
		name, err := attach.ReadReply(bufio.NewReader(&b))
		if err != nil {
			t.Fatalf("ReadReply: %v", err)
		}
		if name != "one-off-1234" {
			t.Errorf("got name %q, want %q", name, "one-off-1234")
		}
	})

	t.Run("ERR", func(t *testing.T) {
		var b bytes.Buffer
		if err := attach.WriteRefused(&b, "wrong_secret", "the secret is wrong:\nuse the right one"); err != nil {
			t.Fatal(err)
		}
		if got, want := b.String(), "ERR wrong_secret the secret is wrong: use the right one\n"; got != want {
			t.Errorf("got line %q, want %q", got, want)
		}
		_, err := attach.ReadReply(bufio.NewReader(&b))
		var refused *attach.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("got %v, want a *RefusedError", err)
		}
		if refused.Code != "wrong_secret" || refused.Message != "the secret is wrong: use the right one" {
			t.Errorf("got code %q, message %q", refused.Code, refused.Message)
		}
		if refused.Error() != refused.Message {
			t.Errorf("got Error() %q, want the message", refused.Error())
		}
	})

	t.Run("garbage", func(t *testing.T) {
		for _, line := range []string{"HELLO there\n", "OK\n", "\n"} {
			_, err := attach.ReadReply(reader(line))
			var refused *attach.RefusedError
			if err == nil || errors.As(err, &refused) {
				t.Errorf("%q: got %v, want an error that is not a refusal", line, err)
			}
		}
	})

	t.Run("connection closed", func(t *testing.T) {
		if _, err := attach.ReadReply(reader("")); !errors.Is(err, io.EOF) {
			t.Errorf("got %v, want io.EOF", err)
		}
	})
}

type frame struct {
	t attach.FrameType
	p []byte
}

// readAll reads every frame until EOF, copying the payloads.
func readAll(t *testing.T, r io.Reader) []frame {
	t.Helper()
	fr := attach.NewReader(r)
	var out []frame
	for {
		typ, p, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		out = append(out, frame{typ, bytes.Clone(p)})
	}
}

func TestWriter_WriteFrame(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (2*attach.MaxFrameLen+100)/16)
	tests := []struct {
		name    string
		typ     attach.FrameType
		payload []byte
		sizes   []int // of the frames it becomes
	}{
		{name: "stdin", typ: attach.Stdin, payload: []byte("ls -l\r"), sizes: []int{6}},
		{name: "resize", typ: attach.Resize, payload: attach.EncodeSize(24, 80), sizes: []int{4}},
		{name: "close stdin", typ: attach.CloseStdin, payload: nil, sizes: []int{0}},
		{name: "signal", typ: attach.Signal, payload: []byte("INT"), sizes: []int{3}},
		{name: "stdout", typ: attach.Stdout, payload: []byte("total 0\r\n"), sizes: []int{9}},
		{name: "stderr", typ: attach.Stderr, payload: []byte("oops\n"), sizes: []int{5}},
		{name: "exit", typ: attach.Exit, payload: attach.EncodeExit(attach.ExitStatus{Outcome: "exited"}), sizes: []int{20}},
		{name: "message", typ: attach.Message, payload: []byte("oneoffd: hello\r\n"), sizes: []int{16}},
		{name: "exactly the limit", typ: attach.Stdout, payload: big[:attach.MaxFrameLen], sizes: []int{attach.MaxFrameLen}},
		{name: "over the limit", typ: attach.Stdout, payload: big,
			sizes: []int{attach.MaxFrameLen, attach.MaxFrameLen, len(big) - 2*attach.MaxFrameLen}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := attach.NewWriter(&b).WriteFrame(tt.typ, tt.payload); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			frames := readAll(t, &b)
			if len(frames) != len(tt.sizes) {
				t.Fatalf("got %d frames, want %d", len(frames), len(tt.sizes))
			}
			var joined []byte
			for i, f := range frames {
				if f.t != tt.typ {
					t.Errorf("frame %d: got type %q, want %q", i, f.t, tt.typ)
				}
				if len(f.p) != tt.sizes[i] {
					t.Errorf("frame %d: got %d bytes, want %d", i, len(f.p), tt.sizes[i])
				}
				joined = append(joined, f.p...)
			}
			if !bytes.Equal(joined, tt.payload) {
				t.Errorf("got a payload of %d bytes back, want the %d bytes written", len(joined), len(tt.payload))
			}
		})
	}
}

func TestWriter_StreamWriter(t *testing.T) {
	var b bytes.Buffer
	w := attach.NewWriter(&b).StreamWriter(attach.Stderr)
	for _, s := range []string{"one", "", "two"} {
		n, err := w.Write([]byte(s))
		if err != nil || n != len(s) {
			t.Fatalf("Write(%q): got %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	frames := readAll(t, &b)
	if len(frames) != 2 {
		t.Fatalf("got %d frames, want 2: an empty write makes none", len(frames))
	}
	for i, want := range []string{"one", "two"} {
		if frames[i].t != attach.Stderr || string(frames[i].p) != want {
			t.Errorf("frame %d: got %q %q, want %q %q", i, frames[i].t, frames[i].p, attach.Stderr, want)
		}
	}
}

func TestWriter_concurrent(t *testing.T) {
	const writers, each = 8, 50
	var b bytes.Buffer
	w := attach.NewWriter(&b)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			s := w.StreamWriter(attach.Stdout)
			for j := range each {
				// Every payload says who wrote it; lengths vary.
				p := bytes.Repeat([]byte{byte('a' + i)}, 1+j*37)
				if _, err := s.Write(p); err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
			}
		})
	}
	// One writer sends a payload that takes several frames, which must
	// stay together.
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		if err := w.WriteFrame(attach.Stderr, bytes.Repeat([]byte{'Z'}, attach.MaxFrameLen+1)); err != nil {
			t.Errorf("big writer: %v", err)
		}
	}()
	wg.Wait()
	<-bigDone

	frames := readAll(t, &b)
	if got, want := len(frames), writers*each+2; got != want {
		t.Fatalf("got %d frames, want %d", got, want)
	}
	counts := map[byte]int{}
	var big []int // indices of the big payload's frames
	for i, f := range frames {
		if len(f.p) == 0 || !bytes.Equal(f.p, bytes.Repeat(f.p[:1], len(f.p))) {
			t.Fatalf("frame %d is mixed: writes interleaved", i)
		}
		if f.t == attach.Stderr {
			big = append(big, i)
			continue
		}
		counts[f.p[0]]++
	}
	if len(big) != 2 || big[1] != big[0]+1 {
		t.Errorf("got the big payload in frames %v, want two adjacent ones", big)
	}
	for i := range writers {
		if got := counts[byte('a'+i)]; got != each {
			t.Errorf("writer %d: got %d frames, want %d", i, got, each)
		}
	}
}

func TestReader_ReadFrame(t *testing.T) {
	header := func(typ attach.FrameType, n uint32) []byte {
		h := []byte{byte(typ), 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[1:], n)
		return h
	}
	t.Run("oversized length", func(t *testing.T) {
		r := attach.NewReader(bytes.NewReader(header(attach.Stdout, attach.MaxFrameLen+1)))
		if _, _, err := r.ReadFrame(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("got %v, want a refusal of the length", err)
		}
	})
	t.Run("huge length", func(t *testing.T) {
		r := attach.NewReader(bytes.NewReader(header(attach.Stdout, 1<<32-1)))
		if _, _, err := r.ReadFrame(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("got %v, want a refusal of the length", err)
		}
	})
	t.Run("truncated payload", func(t *testing.T) {
		r := attach.NewReader(bytes.NewReader(append(header(attach.Stdout, 10), "short"...)))
		if _, _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("truncated header", func(t *testing.T) {
		r := attach.NewReader(bytes.NewReader([]byte{byte(attach.Stdout), 0}))
		if _, _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("end between frames", func(t *testing.T) {
		r := attach.NewReader(bytes.NewReader(nil))
		if _, _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
			t.Errorf("got %v, want io.EOF", err)
		}
	})
}

func TestEncodeSize(t *testing.T) {
	for _, size := range [][2]uint16{{24, 80}, {1, 65535}, {65535, 1}, {0, 0}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			p := attach.EncodeSize(size[0], size[1])
			rows, cols, err := attach.DecodeSize(p)
			if err != nil {
				t.Fatalf("DecodeSize: %v", err)
			}
			if rows != size[0] || cols != size[1] {
				t.Errorf("got %dx%d, want %dx%d", rows, cols, size[0], size[1])
			}
		})
	}
}

func TestDecodeSize(t *testing.T) {
	for _, n := range []int{0, 3, 5} {
		if _, _, err := attach.DecodeSize(make([]byte, n)); err == nil {
			t.Errorf("%d bytes: got no error, want one", n)
		}
	}
}

func TestEncodeExit(t *testing.T) {
	code := func(n int) *int { return &n }
	tests := []struct {
		name   string
		status attach.ExitStatus
	}{
		{name: "exit code 0", status: attach.ExitStatus{Outcome: "exited", ExitCode: code(0)}},
		{name: "exit code 130", status: attach.ExitStatus{Outcome: "exited", ExitCode: code(130)}},
		{name: "no exit code", status: attach.ExitStatus{Outcome: "failed", Message: "no such image"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := attach.DecodeExit(attach.EncodeExit(tt.status))
			if err != nil {
				t.Fatalf("DecodeExit: %v", err)
			}
			if got.Outcome != tt.status.Outcome || got.Message != tt.status.Message {
				t.Errorf("got %+v, want %+v", got, tt.status)
			}
			switch {
			case (got.ExitCode == nil) != (tt.status.ExitCode == nil):
				t.Errorf("got exit code %v, want %v", got.ExitCode, tt.status.ExitCode)
			case got.ExitCode != nil && *got.ExitCode != *tt.status.ExitCode:
				t.Errorf("got exit code %d, want %d", *got.ExitCode, *tt.status.ExitCode)
			}
		})
	}
}

func TestDecodeExit(t *testing.T) {
	for _, p := range []string{"", "{", "not json", `{"exit_code":"x"}`} {
		if _, err := attach.DecodeExit([]byte(p)); err == nil {
			t.Errorf("%q: got no error, want one", p)
		}
	}
}
