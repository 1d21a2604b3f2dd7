package e2e

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

func TestReaper_Idle(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--idle-timeout", "2s")
	app := d.deploy(nil, "")

	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	tm.send("echo still here\r")
	tm.expect(`still here\r?\n`)
	// Now nothing flows either way.
	if code := tm.wait(); code == 0 {
		t.Errorf("CLI exit code = 0 after an idle close, want non-zero")
	}
	tm.expect(`closed after 2s without input or output`)
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d records, want 1", len(list))
	}
	if f := d.waitFinished(list[0].ID); f.Outcome != apitypes.IdleTimeout {
		t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.IdleTimeout)
	}
	d.waitNoContainers()
}

func TestReaper_AttachWait(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--attach-wait-timeout", "1s")
	app := d.deploy(nil, "")
	o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.containers()); n != 1 {
		t.Fatalf("%d containers after create, want 1 (created, not started)", n)
	}
	if f := d.waitFinished(o.ID); f.Outcome != apitypes.AttachTimeout {
		t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.AttachTimeout)
	}
	d.waitNoContainers()
	_, err = client.Dial(context.Background(), o.AttachURL, o.AttachSecret, client.AttachOptions{})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "secret_used" {
		t.Errorf("attach after expiry: %v, want secret_used", err)
	}
}

func TestRun_ClientGoesAway(t *testing.T) {
	t.Parallel()
	// The session waits for the CLI to reconnect for the grace, then stops.
	d := startDaemon(t, "--reconnect-grace", "1s")
	app := d.deploy(nil, "")
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	tm.send("sleep 600\r")
	if n := len(d.containers()); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	_ = tm.cmd.Process.Signal(syscall.SIGKILL)
	tm.wait()
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app})
	if err != nil || len(list) != 1 {
		t.Fatalf("records %v, %v", list, err)
	}
	if f := d.waitFinished(list[0].ID); f.Outcome != apitypes.Disconnected {
		t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.Disconnected)
	}
	d.waitNoContainers()
}

func TestStop_Running(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--stop-grace", "1s")
	app := d.deploy(nil, "")
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app, State: apitypes.Running})
	if err != nil || len(list) != 1 {
		t.Fatalf("running records %v, %v", list, err)
	}
	out, err := d.cli("stop", list[0].ID).CombinedOutput()
	if err != nil {
		t.Fatalf("oneoff stop: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "stopped") {
		t.Errorf("oneoff stop said %q, want it to say stopped", out)
	}
	if code := tm.wait(); code == 0 {
		t.Errorf("CLI exit code = 0 after a stop, want non-zero")
	}
	tm.expect(`stopped`)
	d.waitNoContainers()

	t.Run("ps lists it as finished", func(t *testing.T) {
		out, err := d.cli("ps", "--all", "--app", app).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), list[0].Name) || !strings.Contains(string(out), "stopped") {
			t.Errorf("ps --all = %q, want %s stopped", out, list[0].Name)
		}
		out, _ = d.cli("ps", "--app", app).CombinedOutput()
		if strings.Contains(string(out), list[0].Name) {
			t.Errorf("ps without --all lists a finished one-off: %q", out)
		}
	})
	t.Run("inspect shows it", func(t *testing.T) {
		out, err := d.cli("inspect", list[0].ID).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{list[0].Name, "/bin/sh -c sh", "stopped", "127.0.0.1:"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("inspect output lacks %q:\n%s", want, out)
			}
		}
	})
}
