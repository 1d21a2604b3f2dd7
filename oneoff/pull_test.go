package oneoff_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

const testImage = "registry.example.com/web:v1" // the harness's release

// pullGate makes pulls wait until released, reporting one step of
// progress first; a non-nil fail makes them fail once released.
type pullGate struct {
	release chan struct{}
	fail    error
}

func (g *pullGate) hook(ctx context.Context, ref string, progress func(oneoff.PullProgress)) error {
	progress(oneoff.PullProgress{Ref: ref, Status: oneoff.PullPulling, Layers: 2, LayersDone: 1, Bytes: 1 << 20, BytesTotal: 4 << 20})
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fail
}

func TestManager_pull(t *testing.T) {
	ctx := context.Background()

	t.Run("attached: answered at once, the user sees the pull, then the shell", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		gate := &pullGate{release: make(chan struct{})}
		h.rt.PullHook = gate.hook
		rec, secret := h.create(t, oneoff.Request{})
		if rec.State != oneoff.Pending || rec.ContainerID != "" {
			t.Fatalf("during the pull: state %s, container %q; want pending, none yet", rec.State, rec.ContainerID)
		}
		sess, err := h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		conn := newFakeConn(t)
		result := make(chan oneoff.Result, 1)
		go func() { result <- sess.Run(ctx, conn, oneoff.TermSize{}) }()
		deadline := time.Now().Add(waitLimit)
		for !strings.Contains(conn.notices.String(), "1/2 layers, 1.00 MiB of 4.00 MiB") {
			if time.Now().After(deadline) {
				t.Fatalf("notices %q: no progress shown", conn.notices.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(gate.release)
		cid := h.waitContainer(t, rec.ID)
		stream := h.rt.Started(t, cid)
		stream.Send(false, "hi\n")
		h.rt.Exit(t, cid, 0, true)
		if res := <-result; res.Outcome != oneoff.Exited {
			t.Errorf("result %+v", res)
		}
		if !strings.Contains(conn.notices.String(), "image pulled") {
			t.Errorf("notices %q lack the end of the pull", conn.notices.String())
		}
	})

	t.Run("attached: a failed pull is told, nothing is left", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		gate := &pullGate{release: make(chan struct{}), fail: errdefs.NotFound("image_not_found", "image %s does not exist in registry registry.example.com", testImage)}
		close(gate.release)
		h.rt.PullHook = gate.hook
		rec, secret := h.create(t, oneoff.Request{})
		sess, err := h.m.Claim(ctx, rec.ID, secret, "127.0.0.1:1")
		if err != nil {
			// The pull may have failed already: the secret is then spent.
			wantClass(t, err, errdefs.ErrConflict, "secret_used")
		} else {
			res := sess.Run(ctx, newFakeConn(t), oneoff.TermSize{})
			if res.Outcome != oneoff.Failed || !strings.Contains(res.Message, "does not exist in registry") {
				t.Errorf("result %+v", res)
			}
		}
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Failed || !strings.Contains(f.Error, "does not exist in registry") {
			t.Errorf("record %s %q", f.Outcome, f.Error)
		}
		if calls := strings.Join(h.rt.Calls(), ","); strings.Contains(calls, "create") {
			t.Errorf("calls %s: no container should have been made", calls)
		}
	})

	t.Run("detached: the pull is in its log, then it runs", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		gate := &pullGate{release: make(chan struct{})}
		close(gate.release)
		h.rt.PullHook = gate.hook
		rec, _ := h.create(t, oneoff.Request{Detached: true})
		cid := h.waitContainer(t, rec.ID)
		h.waitStored(t, rec.ID, oneoff.Running) // exits only once started
		h.rt.Exit(t, cid, 0, false)
		h.waitStored(t, rec.ID, oneoff.Finished)
		got := strings.Join(h.texts(rec.Name), "|")
		for _, want := range []string{"stderr:oneoffd: pulling image " + testImage, "stderr:oneoffd: pulled image " + testImage} {
			if !strings.Contains(got, want) {
				t.Errorf("log %q lacks %q", got, want)
			}
		}
	})

	t.Run("stopped while pulling: nothing is made", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		gate := &pullGate{release: make(chan struct{})}
		h.rt.PullHook = gate.hook
		rec, _ := h.create(t, oneoff.Request{Detached: true})
		got, err := h.m.Stop(ctx, rec.ID, "tester")
		if err != nil || got.Outcome != oneoff.Stopped {
			t.Fatalf("Stop = %s, %v", got.Outcome, err)
		}
		close(gate.release)
		time.Sleep(50 * time.Millisecond) // the pull goroutine ends
		if err := h.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if calls := strings.Join(h.rt.Calls(), ","); strings.Contains(calls, "create") {
			t.Errorf("calls %s: no container should have been made", calls)
		}
	})

	t.Run("with uploads, the pull happens in the request", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		h.rt.PullHook = func(context.Context, string, func(oneoff.PullProgress)) error { return errors.New("registry down") }
		_, _, err := h.m.Create(ctx, testApp, oneoff.Request{
			Command: oneoff.Command{Line: "x"},
			Uploads: []oneoff.Upload{{Name: "a", Size: 1}}, UploadData: &memUploads{data: []string{"a"}},
		})
		if err == nil || !strings.Contains(err.Error(), "registry down") {
			t.Errorf("Create: %v, want the pull's error", err)
		}
	})
}

// waitContainer waits until one-off id has a container.
func (h *harness) waitContainer(t *testing.T, id string) string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if o, _ := h.m.Get(context.Background(), id); o.ContainerID != "" {
			return o.ContainerID
		}
		if time.Now().After(deadline) {
			t.Fatalf("one-off %s got no container", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManager_CheckImage(t *testing.T) {
	ctx := context.Background()
	t.Run("on the engine", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		if err := h.m.CheckImage(ctx, testImage); err != nil {
			t.Fatal(err)
		}
		if calls := h.rt.Calls(); slices.Contains(calls, "check "+testImage) || slices.Contains(calls, "pull "+testImage) {
			t.Errorf("calls %q: an image the engine has was looked for elsewhere", calls)
		}
	})
	t.Run("its registry has it", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		if err := h.m.CheckImage(ctx, testImage); err != nil {
			t.Fatal(err)
		}
		if calls := h.rt.Calls(); !slices.Contains(calls, "check "+testImage) || slices.Contains(calls, "pull "+testImage) {
			t.Errorf("calls %q: want the registry asked, nothing pulled: the first one-off pulls", calls)
		}
	})
	t.Run("cannot be pulled", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.Missing(testImage)
		h.rt.PullHook = func(context.Context, string, func(oneoff.PullProgress)) error {
			return errdefs.Unavailable("registry_unavailable", errors.New("dial tcp: i/o timeout"), "registry docker.io does not answer")
		}
		err := h.m.CheckImage(ctx, testImage)
		wantClass(t, err, errdefs.ErrUnavailable, "image_unavailable")
		if want := "does not have image " + testImage + " and cannot pull it: registry docker.io does not answer"; !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to say %q", err, want)
		}
	})
}
