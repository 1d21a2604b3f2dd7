package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// TestDocker_engineKilled kills the engine under a wait, a log follow and
// an attachment, and checks that each ends at once saying the engine went
// away, that calls fail the same way while it is down, and that the same
// client works again once it is back.
func TestDocker_engineKilled(t *testing.T) {
	t.Parallel()
	eng := testenv.StartEngine(t, testenv.EngineOptions{})
	d, err := docker.New(eng.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	labels := map[string]string{oneoff.LabelManaged: "true", oneoff.LabelInstance: "runtime-engine-test"}
	s := oneoff.Spec{Image: testenv.Image(t), Cmd: []string{"sh", "-c", "while :; do echo tick; sleep 0.1; done"}, Labels: labels, Logs: true}
	cid, err := created(d.Create(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	proc, err := d.Start(ctx, cid, oneoff.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exitc := proc.Exit
	logs, err := d.Logs(ctx, cid, oneoff.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	if _, err := logs.Next(); err != nil {
		t.Fatalf("first log entry: %v", err)
	}
	followed := make(chan error, 1)
	go func() {
		for {
			if _, err := logs.Next(); err != nil {
				followed <- err
				return
			}
		}
	}()

	eng.Kill()

	t.Run("the wait ends saying the engine went away", func(t *testing.T) {
		select {
		case exit := <-exitc:
			if !oneoff.EngineGone(exit.Err) || !errors.Is(exit.Err, errdefs.ErrUnavailable) {
				t.Errorf("wait: %+v, want an engine_unavailable error", exit)
			}
			if exit.Err != nil && !strings.Contains(exit.Err.Error(), "went away") {
				t.Errorf("wait: %q, want it to say the engine went away", exit.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the wait goes on 10s after the engine was killed")
		}
	})
	t.Run("the log follow ends", func(t *testing.T) {
		select {
		case <-followed:
		case <-time.After(10 * time.Second):
			t.Fatal("the log follow goes on 10s after the engine was killed")
		}
	})
	t.Run("calls fail as engine unavailable", func(t *testing.T) {
		if _, err := d.List(ctx, labels); !oneoff.EngineGone(err) {
			t.Errorf("list: %v, want engine_unavailable", err)
		}
		if _, err := d.Create(ctx, s); !oneoff.EngineGone(err) {
			t.Errorf("create: %v, want engine_unavailable", err)
		}
	})

	eng.Restart()

	t.Run("the same client works again", func(t *testing.T) {
		list, err := d.List(ctx, labels)
		if err != nil || len(list) != 1 || list[0].Running {
			t.Fatalf("list: %+v, %v; want the container, not running", list, err)
		}
		exit := <-d.Wait(ctx, cid)
		if exit.Err != nil || exit.Code == 0 {
			t.Errorf("wait after the restart: %+v, want the non-zero code of a lost container", exit)
		}
		if err := d.Remove(ctx, cid); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
}
