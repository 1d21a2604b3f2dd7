package oneoff_test

import (
	"context"
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

func TestSession_Run_stoppedBySomeone(t *testing.T) {
	h := newHarness(t, oneoff.Config{})
	r := h.run(t, oneoff.Request{TTY: true}, oneoff.TermSize{})
	stopped := make(chan error, 1)
	go func() {
		_, err := h.m.Stop(context.Background(), r.rec.ID, "alice@laptop")
		stopped <- err
	}()
	res := r.wait(t)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	h.checkEnd(t, r, res, oneoff.Stopped, 143)
	if res.Message != "stopped by alice@laptop" {
		t.Errorf("the user was told %q, want who stopped it", res.Message)
	}
	notice := r.conn.notices.String()
	if !strings.HasPrefix(notice, "\r\n") || !strings.Contains(notice, "oneoffd: stopped by alice@laptop: SIGTERM, then SIGKILL after 10s") {
		t.Errorf("the terminal got %q, want a line of its own saying who stopped it and what comes", notice)
	}
}
