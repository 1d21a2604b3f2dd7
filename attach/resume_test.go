package attach

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestHello_resume(t *testing.T) {
	for _, h := range []Hello{
		{ID: "id", Secret: "s", Framed: true, Resumable: true, Rows: 24, Cols: 80},
		{ID: "id", Secret: "tok", Framed: true, Resume: true, From: 12345},
		{ID: "id", Secret: "tok", Framed: true, Resume: true, From: FromLive},
	} {
		got, err := ReadHello(bufio.NewReader(strings.NewReader(h.String())))
		if err != nil || got != h {
			t.Errorf("%q read back as %+v, %v", h.String(), got, err)
		}
	}
	for _, line := range []string{"id s resumable\n", "id s resume=3\n", "id s framed resume=-1\n", "id s framed resume=x\n", "id s framed resumable=1\n"} {
		if _, err := ReadHello(bufio.NewReader(strings.NewReader(line))); !errors.Is(err, ErrBadHello) {
			t.Errorf("%q: %v, want a bad handshake", line, err)
		}
	}
}

func TestAccept(t *testing.T) {
	var b bytes.Buffer
	if err := WriteAccept(&b, Accept{Name: "one-off-1", Token: "T0k"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAccept(bufio.NewReader(bytes.NewReader(b.Bytes())))
	if err != nil || got != (Accept{Name: "one-off-1", Token: "T0k"}) {
		t.Errorf("got %+v, %v", got, err)
	}
	// An older client reads the name alone.
	if name, err := ReadReply(bufio.NewReader(bytes.NewReader(b.Bytes()))); err != nil || name != "one-off-1" {
		t.Errorf("ReadReply: %q, %v", name, err)
	}
	if n, err := DecodeAck(EncodeAck(1 << 40)); err != nil || n != 1<<40 {
		t.Errorf("ack: %d, %v", n, err)
	}
	if _, err := DecodeAck([]byte{1}); err == nil {
		t.Error("a short ack decoded")
	}
}
