package oneoff_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

func TestSession_Run_maxLifetime(t *testing.T) {
	h := newHarness(t, oneoff.Config{MaxLifetime: 50 * time.Millisecond})
	r := h.run(t, oneoff.Request{TTY: true}, oneoff.TermSize{})
	// A terminal that keeps resizing is never idle; the lifetime still ends it.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case r.conn.in <- oneoff.Input{Kind: oneoff.InputResize, Size: oneoff.TermSize{Rows: 24, Cols: 80}}:
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	res := r.wait(t)
	h.checkEnd(t, r, res, oneoff.LifetimeExceeded, 143)
	if told := r.conn.finished(); len(told) == 1 && !strings.Contains(told[0].Message, "maximum lifetime") {
		t.Errorf("the user was told %q, want a word about the maximum lifetime", told[0].Message)
	}
	if calls := h.rt.Calls(); !slices.Contains(calls, "stop "+r.rec.ContainerID) {
		t.Errorf("got calls %q, want a stop", calls)
	}
}
