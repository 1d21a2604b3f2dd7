package api_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/oneoff"
)

// attachServer is the attach endpoint over a harness, on a local port.
type attachServer struct {
	*harness
	addr string
}

func newAttachServer(t *testing.T) *attachServer {
	t.Helper()
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewAttachServer(h.m, h.log, api.AttachConfig{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		ln.Close() // in case Serve had not begun
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &attachServer{harness: h, addr: ln.Addr().String()}
}

// create makes an attached one-off and returns it with its secret.
func (s *attachServer) create(t *testing.T) (oneoff.OneOff, string) {
	t.Helper()
	rec, secret, err := s.m.Create(context.Background(), testApp,
		oneoff.Request{Command: oneoff.Command{Args: []string{"bash"}}, TTY: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return rec, secret
}

// dial connects to the endpoint and sends handshake.
func (s *attachServer) dial(t *testing.T, handshake string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Only a broken test waits this long.
	if err := c.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, handshake); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFinished polls until one-off id has finished.
func (s *attachServer) waitFinished(t *testing.T, id string) oneoff.OneOff {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		rec, err := s.m.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State == oneoff.Finished {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("one-off %s is still %s", id, rec.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAttachServer_raw(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	c := s.dial(t, rec.ID+" "+secret+"\nhello stdin")
	stream := s.rt.Started(t, rec.ContainerID)
	if got, want := stream.ReadStdin(t, len("hello stdin")), "hello stdin"; got != want {
		t.Errorf("got stdin %q, want %q", got, want)
	}
	stream.Send(false, "total 0\r\n")
	stream.Send(false, "$ ")
	s.rt.Exit(t, rec.ContainerID, 0, true)

	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read until the end: %v", err)
	}
	if got, want := string(out), "total 0\r\n$ "; got != want {
		t.Errorf("got output %q, want %q", got, want)
	}
	got := s.waitFinished(t, rec.ID)
	if got.Outcome != oneoff.Exited || got.ExitCode == nil || *got.ExitCode != 0 {
		t.Errorf("got outcome %q, exit code %v; want exited, 0", got.Outcome, got.ExitCode)
	}
	if !strings.HasPrefix(got.Client, "127.0.0.1:") {
		t.Errorf("got client %q, want the terminal's address", got.Client)
	}
}

func TestAttachServer_framed(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	c := s.dial(t, attach.Hello{ID: rec.ID, Secret: secret, Framed: true, Rows: 24, Cols: 80}.String())
	br := bufio.NewReader(c)
	name, err := attach.ReadReply(br)
	if err != nil {
		t.Fatalf("ReadReply: %v", err)
	}
	if name != rec.Name {
		t.Errorf("got name %q, want %q", name, rec.Name)
	}

	w := attach.NewWriter(c)
	if err := w.WriteFrame(attach.Stdin, []byte("exit 7\n")); err != nil {
		t.Fatal(err)
	}
	stream := s.rt.Started(t, rec.ContainerID)
	if got, want := stream.ReadStdin(t, len("exit 7\n")), "exit 7\n"; got != want {
		t.Errorf("got stdin %q, want %q", got, want)
	}
	stream.Send(false, "bye\r\n")
	s.rt.Exit(t, rec.ContainerID, 7, true)

	r := attach.NewReader(br)
	var stdout strings.Builder
	for {
		typ, p, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame before the exit frame: %v", err)
		}
		if typ == attach.Stdout {
			stdout.Write(p)
			continue
		}
		if typ != attach.Exit {
			t.Fatalf("got a %q frame, want stdout or exit", typ)
		}
		st, err := attach.DecodeExit(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Outcome != string(oneoff.Exited) || st.ExitCode == nil || *st.ExitCode != 7 {
			t.Errorf("got exit status %+v, want exited with code 7", st)
		}
		break
	}
	if got, want := stdout.String(), "bye\r\n"; got != want {
		t.Errorf("got stdout %q, want %q", got, want)
	}
	if _, _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("after the exit frame: got %v, want io.EOF", err)
	}
}

func TestAttachServer_clientGoesAway(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	c := s.dial(t, attach.Hello{ID: rec.ID, Secret: secret, Framed: true}.String())
	if _, err := attach.ReadReply(bufio.NewReader(c)); err != nil {
		t.Fatalf("ReadReply: %v", err)
	}
	s.rt.Started(t, rec.ContainerID)
	c.Close()
	if got := s.waitFinished(t, rec.ID); got.Outcome != oneoff.Disconnected {
		t.Errorf("got outcome %q, want %q", got.Outcome, oneoff.Disconnected)
	}
}

// refusal reads the endpoint's one-line answer and checks that the
// connection closes after it.
func refusal(t *testing.T, c net.Conn) string {
	t.Helper()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read the answer: %v (got %q)", err, line)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Errorf("after the answer: got %q, %v; want the connection closed", rest, err)
	}
	return line
}

func TestAttachServer_refusals(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	_, other := s.create(t)
	tests := []struct {
		name      string
		handshake string
		want      string // the answer's prefix
	}{
		{name: "wrong secret", handshake: rec.ID + " not-the-secret\n", want: "ERR wrong_secret "},
		{name: "another one-off's secret", handshake: rec.ID + " " + other + " framed\n", want: "ERR wrong_secret "},
		{name: "unknown one-off", handshake: "nosuchid " + secret + "\n", want: "ERR oneoff_not_found "},
		{name: "malformed handshake", handshake: rec.ID + "\n", want: "ERR bad_handshake "},
		{name: "unknown option", handshake: rec.ID + " " + secret + " colour\n", want: "ERR bad_handshake "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := refusal(t, s.dial(t, tt.handshake))
			if !strings.HasPrefix(line, tt.want) {
				t.Errorf("got %q, want a line starting %q", line, tt.want)
			}
		})
	}
	// None of the refusals spent the secret.
	if got, err := s.m.Get(context.Background(), rec.ID); err != nil || got.State != oneoff.Pending {
		t.Errorf("got state %q, %v; want the one-off still pending", got.State, err)
	}
}

func TestAttachServer_secretUsed(t *testing.T) {
	s := newAttachServer(t)
	rec, secret := s.create(t)
	first := s.dial(t, attach.Hello{ID: rec.ID, Secret: secret, Framed: true}.String())
	br := bufio.NewReader(first)
	if _, err := attach.ReadReply(br); err != nil {
		t.Fatalf("first ReadReply: %v", err)
	}

	line := refusal(t, s.dial(t, rec.ID+" "+secret+"\n"))
	if !strings.HasPrefix(line, "ERR secret_used ") {
		t.Errorf("got %q, want a line starting %q", line, "ERR secret_used ")
	}

	// The first terminal is unharmed.
	stream := s.rt.Started(t, rec.ContainerID)
	stream.Send(false, "still here")
	s.rt.Exit(t, rec.ContainerID, 0, true)
	r := attach.NewReader(br)
	typ, p, err := r.ReadFrame()
	if err != nil || typ != attach.Stdout || string(p) != "still here" {
		t.Errorf("got %q %q, %v; want stdout %q", typ, p, err, "still here")
	}
	if typ, _, err := r.ReadFrame(); err != nil || typ != attach.Exit {
		t.Errorf("got %q, %v; want the exit frame", typ, err)
	}

	line = refusal(t, s.dial(t, rec.ID+" "+secret+" framed\n"))
	if !strings.HasPrefix(line, "ERR secret_used ") {
		t.Errorf("after the end: got %q, want a line starting %q", line, "ERR secret_used ")
	}
}
