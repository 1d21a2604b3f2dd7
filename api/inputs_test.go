package api

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

func TestRawConn_stdinBackpressure(t *testing.T) {
	client, server := net.Pipe() // unbuffered: what the client wrote is what the daemon read
	defer client.Close()
	rc := newRawConn(server, bufio.NewReader(server), false)
	defer rc.finish(nil)

	// The session takes nothing: the daemon must stop reading soon.
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	_ = client.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	written := 0
	for written < 16<<20 {
		n, err := client.Write(chunk)
		written += n
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %v", err)
			}
			break
		}
	}
	if bound := (inputQueue + 2) * 32 << 10; written > bound {
		t.Errorf("the daemon read %d bytes nobody took, want at most %d", written, bound)
	}
	// What was read is all there, in order, for the session.
	got := 0
	for got < written {
		in, err := rc.Next()
		if err != nil || in.Kind != oneoff.InputData {
			t.Fatalf("Next after %d bytes: %+v, %v", got, in.Kind, err)
		}
		got += len(in.Data)
	}
	if got != written {
		t.Errorf("the session got %d bytes, want the %d written", got, written)
	}
}
