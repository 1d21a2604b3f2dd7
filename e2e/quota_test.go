package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/errdefs"
)

// TestQuota_CLI shows a create over the app's quota refused through the
// CLI, with a message that names what runs, and accepted again once one
// of them has ended.
func TestQuota_CLI(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--max-oneoffs-per-app", "2")
	app := d.deploy(nil, "")
	ctx := context.Background()
	var running []apitypes.OneOff
	for range 2 {
		running = append(running, d.startDetached(app, "sleep 300", "").OneOff)
	}
	t.Cleanup(func() {
		for _, o := range running {
			_, _ = d.client().Stop(ctx, o.ID)
		}
		d.waitNoContainers()
	})

	out, err := d.cli("--app", app, "run", "--detached", "echo", "too many").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run over the quota: %v, %q; want exit status 1", err, out)
	}
	msg := string(out)
	for _, want := range []string{"oneoff: app " + app + " already runs 2 one-offs", running[0].Name, running[1].Name, "--max-oneoffs-per-app", "stop one or wait"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the CLI said %q; want it to say %q", msg, want)
		}
	}
	if strings.Count(strings.TrimSpace(msg), "\n") > 0 {
		t.Errorf("the CLI said %q; want one line", msg)
	}

	_, err = d.client().CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}, Detached: true})
	if !errors.Is(err, errdefs.ErrQuota) {
		t.Errorf("create through the API: %v, want an errdefs.ErrQuota error", err)
	}

	if out, err := d.cli("stop", running[0].ID).CombinedOutput(); err != nil {
		t.Fatalf("stop %s: %v, %q", running[0].Name, err, out)
	}
	if out, err := d.cli("--app", app, "run", "--detached", "--tail", "echo", "room again").CombinedOutput(); err != nil || !strings.Contains(string(out), "room again") {
		t.Errorf("run once a slot is free: %v, %q; want it to run", err, out)
	}
}
