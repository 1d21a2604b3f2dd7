package oneoff_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
)

// errNodeLost is what a cluster runtime's wait says when the node running
// the container is lost.
var errNodeLost = errdefs.Unavailable(oneoff.CodeNodeLost, nil, "node %s is down", fakeruntime.Node)

// lossyCluster is a fake runtime whose node can be lost: from then on, the
// waits it gave end with errNodeLost, while the containers, as far as the
// fake knows, run on.
type lossyCluster struct {
	*fakeruntime.Runtime
	lost chan struct{}
}

func newLossyCluster(rt *fakeruntime.Runtime) *lossyCluster {
	return &lossyCluster{Runtime: rt, lost: make(chan struct{})}
}

// loseNode ends every wait with errNodeLost.
func (c *lossyCluster) loseNode() { close(c.lost) }

func (c *lossyCluster) Start(ctx context.Context, id string, opts oneoff.StartOptions) (oneoff.Process, error) {
	p, err := c.Runtime.Start(ctx, id, opts)
	if err == nil {
		p.Exit = c.watch(p.Exit)
	}
	return p, err
}

func (c *lossyCluster) Wait(ctx context.Context, id string) <-chan oneoff.Exit {
	return c.watch(c.Runtime.Wait(ctx, id))
}

// watch passes inner's exit on, or errNodeLost once the node is lost.
func (c *lossyCluster) watch(inner <-chan oneoff.Exit) <-chan oneoff.Exit {
	out := make(chan oneoff.Exit, 1)
	go func() {
		select {
		case x := <-inner:
			out <- x
		case <-c.lost:
			out <- oneoff.Exit{Code: -1, Err: errNodeLost}
		}
	}()
	return out
}

// aRun is a running one-off of some mode, with how to end its command.
type aRun struct {
	id, cid string
	// exit ends the command with code, as its container would.
	exit func(code int)
	// result is what the user was told, for an attached one-off.
	result func() *oneoff.Result
}

func TestManager_endsAgree(t *testing.T) {
	modes := []struct {
		name  string
		start func(t *testing.T, h *harness, rt *lossyCluster) aRun
	}{
		{name: "attached", start: func(t *testing.T, h *harness, _ *lossyCluster) aRun {
			r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
			cid := r.rec.ContainerID
			return aRun{id: r.rec.ID, cid: cid, exit: func(code int) { h.rt.Exit(t, cid, code, true) },
				result: func() *oneoff.Result { res := r.wait(t); return &res }}
		}},
		{name: "detached", start: func(t *testing.T, h *harness, _ *lossyCluster) aRun {
			rec, cid := h.startDetached(t, 0)
			return aRun{id: rec.ID, cid: cid, exit: func(code int) { h.rt.Exit(t, cid, code, false) },
				result: func() *oneoff.Result { return nil }}
		}},
		{name: "adopted", start: func(t *testing.T, h *harness, rt *lossyCluster) aRun {
			rec, cid := h.startDetached(t, 0)
			if err := h.m.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.m = oneoff.NewManager(h.cfg, rt, h.db, h.deploys, h.logs, slog.New(slog.DiscardHandler))
			if err := h.m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.m.Close(context.Background()) })
			return aRun{id: rec.ID, cid: cid, exit: func(code int) { h.rt.Exit(t, cid, code, false) },
				result: func() *oneoff.Result { return nil }}
		}},
	}
	memory := func(h *harness) string {
		for _, s := range h.m.Config().Sizes {
			if s.Name == h.m.Config().DefaultSize {
				return fmt.Sprintf("killed: it ran out of memory (size %s allows ", s.Name)
			}
		}
		return "no default size"
	}
	for _, tt := range []struct {
		name    string
		end     func(t *testing.T, h *harness, rt *lossyCluster, r aRun)
		outcome oneoff.Outcome
		code    int // -1: none
		err     func(h *harness) string
	}{
		{name: "exits", end: func(t *testing.T, _ *harness, _ *lossyCluster, r aRun) { r.exit(3) },
			outcome: oneoff.Exited, code: 3},
		{name: "runs out of memory", end: func(t *testing.T, h *harness, _ *lossyCluster, r aRun) {
			h.rt.OOM(t, r.cid)
			r.exit(137)
		}, outcome: oneoff.OutOfMemory, code: 137, err: memory},
		{name: "is stopped", end: func(t *testing.T, h *harness, _ *lossyCluster, r aRun) {
			if _, err := h.m.Stop(context.Background(), r.id, "tester"); err != nil {
				t.Errorf("Stop: %v", err)
			}
		}, outcome: oneoff.Stopped, code: 143},
		{name: "loses its node", end: func(t *testing.T, _ *harness, rt *lossyCluster, _ aRun) { rt.loseNode() },
			outcome: oneoff.Lost, code: -1,
			err: func(*harness) string { return "the node " + fakeruntime.Node + " that ran it was lost" }},
	} {
		for _, mode := range modes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				// A drain that waited would outlast the test: a lost
				// node's output never ends.
				h := newHarness(t, oneoff.Config{DrainTimeout: time.Hour})
				rt := newLossyCluster(h.rt)
				h.m = oneoff.NewManager(h.cfg, rt, h.db, h.deploys, h.logs, slog.New(slog.DiscardHandler))
				t.Cleanup(func() { h.m.Close(context.Background()) })
				r := mode.start(t, h, rt)
				tt.end(t, h, rt, r)
				res := r.result()
				got := h.waitStored(t, r.id, oneoff.Finished)
				if got.Outcome != tt.outcome {
					t.Errorf("got outcome %q, want %q", got.Outcome, tt.outcome)
				}
				switch {
				case tt.code < 0 && got.ExitCode != nil:
					t.Errorf("got exit code %d, want none", *got.ExitCode)
				case tt.code >= 0 && (got.ExitCode == nil || *got.ExitCode != tt.code):
					t.Errorf("got exit code %v, want %d", got.ExitCode, tt.code)
				}
				wantErr := ""
				if tt.err != nil {
					wantErr = tt.err(h)
				}
				if wantErr == "" && got.Error != "" || !strings.HasPrefix(got.Error, wantErr) {
					t.Errorf("got error %q, want one starting %q", got.Error, wantErr)
				}
				if res != nil && (res.Outcome != got.Outcome || (res.ExitCode == nil) != (got.ExitCode == nil)) {
					t.Errorf("the user was told %+v, want what the record says: %s/%v", *res, got.Outcome, got.ExitCode)
				}
				if !h.rt.Removed(r.cid) {
					t.Error("the container was not removed")
				}
			})
		}
	}
}
