package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

// engineGone is what a user and a record are told when the engine goes
// away under a one-off.
const engineGone = "engine went away"

// TestEngine_KilledAndRestarted kills the daemon's engine with SIGKILL in
// the middle of an attached session and of a detached job, then starts it
// again, and shows that the daemon, never restarted, tells the truth and
// goes on.
func TestEngine_KilledAndRestarted(t *testing.T) {
	t.Parallel()
	eng := testenv.StartEngine(t, testenv.EngineOptions{})
	d := startDaemon(t, "--docker-host", eng.Host, "--reconcile-interval", "500ms")
	app := d.deploy(nil, "")
	c := d.client()
	ctx := context.Background()

	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	attached, err := c.OneOffs(ctx, client.Filter{App: app, State: apitypes.Running, Mode: apitypes.Attached})
	if err != nil || len(attached) != 1 {
		t.Fatalf("running attached one-offs %+v, %v; want one", attached, err)
	}
	job := d.startDetached(app, `i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.1; done`, "")
	before := d.waitLines(job.ID, 5)

	eng.Kill()

	t.Run("the attached session ends saying the engine went away", func(t *testing.T) {
		if code := tm.wait(); code == 0 {
			t.Errorf("the CLI exited 0, want non-zero")
		}
		if screen := tm.screen(); !strings.Contains(screen, engineGone) {
			t.Errorf("the terminal does not say the %s; screen:\n%s", engineGone, screen)
		}
		if f := d.waitFinished(attached[0].ID); f.Outcome != apitypes.Lost || !strings.Contains(f.Error, engineGone) {
			t.Errorf("record: outcome %s, error %q; want %s, saying the %s", f.Outcome, f.Error, apitypes.Lost, engineGone)
		}
	})
	t.Run("while the engine is down a one-off is refused with 503", func(t *testing.T) {
		_, err := c.CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.Code != oneoff.CodeEngineUnavailable {
			t.Errorf("create: %v, want 503 %s", err, oneoff.CodeEngineUnavailable)
		}
	})
	t.Run("while the engine is down the daemon is not ready", func(t *testing.T) {
		if code, body := d.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "engine") {
			t.Errorf("readyz = %d %s, want 503 naming the engine", code, body)
		}
	})

	eng.Restart()

	t.Run("the daemon is ready again", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := d.readyz()
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz = %d %s 30s after the engine's restart, want 200", code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("the detached job is recorded as it ended", func(t *testing.T) {
		// The engine's kill took the job's process with it; once back,
		// the engine shows its container exited with the code it gives a
		// container it lost.
		f := d.waitFinished(job.ID)
		t.Logf("the job ended %s, exit code %v, %q", f.Outcome, fmtCode(f.ExitCode), f.Error)
		switch f.Outcome {
		case apitypes.Lost:
			if !strings.Contains(f.Error, engineGone) {
				t.Errorf("lost: %q, want it to say the %s", f.Error, engineGone)
			}
		case apitypes.Exited:
			if f.ExitCode == nil || *f.ExitCode == 0 {
				t.Errorf("exited with code %s, want the non-zero code of a killed job", fmtCode(f.ExitCode))
			}
		default:
			t.Errorf("outcome %s (%q), want %s or %s", f.Outcome, f.Error, apitypes.Lost, apitypes.Exited)
		}
	})
	t.Run("the job's lines are in its log, once each", func(t *testing.T) {
		got := texts(d.oneOffLines(job.ID))
		if len(got) < len(before) {
			t.Fatalf("%d lines after the restart, %d before", len(got), len(before))
		}
		for i, l := range got {
			if want := fmt.Sprintf("stdout:line %d", i+1); l != want {
				t.Fatalf("line %d is %q, want %q; log:\n%s", i+1, l, want, strings.Join(got, "\n"))
			}
		}
	})
	t.Run("a new one-off runs end to end", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--no-tty", "echo", "back again").CombinedOutput()
		if code := exitCode(t, err); code != 0 || !strings.Contains(string(out), "back again") {
			t.Errorf("run: exit %d, %q; want 0 and the command's output", code, out)
		}
	})
	t.Run("nothing with the daemon's labels is left on the engine", func(t *testing.T) {
		cli := eng.Client(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			left := engineContainers(t, cli, d.instance)
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d container(s) still there 30s after the restart, e.g. %s (%s)", len(left), left[0].Names[0], left[0].State)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// waitLines waits until a detached one-off's log has at least n lines, and
// returns them.
func (d *daemon) waitLines(id string, n int) []string {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lines := texts(d.oneOffLines(id))
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%d lines of %s after 30s, want %d: %q", len(lines), id, n, lines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns /readyz's status and body.
func (d *daemon) readyz() (int, string) {
	d.t.Helper()
	resp, err := http.Get(d.api + "/readyz")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// engineContainers lists a daemon instance's containers on an engine.
func engineContainers(t *testing.T, cli *dockerclient.Client, instance string) []container.Summary {
	t.Helper()
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+instance))
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: args})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// fmtCode prints an exit code that may be missing.
func fmtCode(c *int) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprint(*c)
}
