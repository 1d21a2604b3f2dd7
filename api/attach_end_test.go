package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestAttachServer_rawTTYClientCloses(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t) // with a TTY
	c := s.dial(t, rec.ID+" "+secret+" rows=24 cols=80\n")
	s.rt.Started(t, rec.ContainerID)
	// With a TTY the end of the stream is the terminal going away, not the
	// end of stdin: the one-off stops.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := s.waitFinished(t, rec.ID)
	if got.Outcome != oneoff.Disconnected {
		t.Errorf("got outcome %q, want %q", got.Outcome, oneoff.Disconnected)
	}
	if calls := s.rt.Calls(); !slices.Contains(calls, "stop "+rec.ContainerID) || !s.rt.Removed(rec.ContainerID) {
		t.Errorf("got calls %q, want the container stopped and removed", calls)
	}
}

func TestAttachServer_rawHalfCloseWithoutTTY(t *testing.T) {
	s := newAttachServer(t)
	rec, secret, err := s.m.Create(context.Background(), testApp,
		oneoff.Request{Command: oneoff.Command{Args: []string{"cat"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.dial(t, rec.ID+" "+secret+"\npiped")
	stream := s.rt.Started(t, rec.ContainerID)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// Without a TTY the half-close is the end of stdin, and the one-off
	// goes on.
	in, err := io.ReadAll(stream.Stdin())
	if err != nil || string(in) != "piped" {
		t.Fatalf("got stdin %q, %v; want %q, then its end", in, err, "piped")
	}
	if got, err := s.m.Get(context.Background(), rec.ID); err != nil || got.State != oneoff.Running {
		t.Fatalf("got state %q, %v; want the one-off still running after stdin ended", got.State, err)
	}
	stream.Send(false, "piped")
	s.rt.Exit(t, rec.ContainerID, 0, true)
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "piped" {
		t.Errorf("got output %q, %v; want %q", out, err, "piped")
	}
	if got := s.waitFinished(t, rec.ID); got.Outcome != oneoff.Exited {
		t.Errorf("got outcome %q, want %q", got.Outcome, oneoff.Exited)
	}
}

func TestAttachServer_unknownSignal(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	c := s.dial(t, attach.Hello{ID: rec.ID, Secret: secret, Framed: true}.String())
	br := bufio.NewReader(c)
	if _, err := attach.ReadReply(br); err != nil {
		t.Fatalf("ReadReply: %v", err)
	}
	s.rt.Started(t, rec.ContainerID)
	payload := "KILL\x1b]0;pwned\x07"
	w := attach.NewWriter(c)
	if err := w.WriteFrame(attach.Signal, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(attach.Signal, []byte("INT")); err != nil {
		t.Fatal(err)
	}
	r := attach.NewReader(br)
	typ, p, err := r.ReadFrame()
	if err != nil || typ != attach.Message {
		t.Fatalf("got %q %q, %v; want a message frame", typ, p, err)
	}
	if strings.Contains(string(p), "KILL") || strings.Contains(string(p), "pwned") || strings.ContainsRune(string(p), '\x1b') {
		t.Errorf("the refusal %q echoes the payload", p)
	}
	if !strings.Contains(string(p), "not forwarded") {
		t.Errorf("got message %q, want it to say the signal is not forwarded", p)
	}
	// The known signal that followed got through, the unknown one did not.
	var sigs []string
	for deadline := time.Now().Add(waitLimit); len(sigs) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		_, sigs = s.rt.ResizesAndSignals(rec.ContainerID)
	}
	if !slices.Equal(sigs, []string{"INT"}) {
		t.Errorf("got signals %q, want only INT", sigs)
	}
	s.rt.Exit(t, rec.ContainerID, 0, true)
	for {
		typ, _, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame before the exit frame: %v", err)
		}
		if typ == attach.Exit {
			break
		}
	}
}

func TestAttachServer_rawWithoutTTYWriteFails(t *testing.T) {
	s := newAttachServer(t)
	rec, secret, err := s.m.Create(context.Background(), testApp,
		oneoff.Request{Command: oneoff.Command{Args: []string{"cat"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.dial(t, rec.ID+" "+secret+"\n")
	stream := s.rt.Started(t, rec.ContainerID)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(stream.Stdin()); err != nil {
		t.Fatalf("stdin: %v, want its end", err)
	}
	// The client goes for good: the next writes to it fail, and the
	// one-off stops.
	c.Close()
	deadline := time.Now().Add(waitLimit)
	for {
		got, err := s.m.Get(context.Background(), rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == oneoff.Finished {
			if got.Outcome != oneoff.Disconnected {
				t.Errorf("got outcome %q, want %q", got.Outcome, oneoff.Disconnected)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("one-off still %s after its client went", got.State)
		}
		stream.Send(false, "output for nobody\n")
		time.Sleep(5 * time.Millisecond)
	}
}
