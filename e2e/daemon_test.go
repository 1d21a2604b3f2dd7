package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

func TestDaemon_Restart(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	c := d.client()
	ctx := context.Background()
	tty := false
	pending, err := c.CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "echo survived"}, TTY: &tty})
	if err != nil {
		t.Fatal(err)
	}
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	running, err := c.OneOffs(ctx, client.Filter{App: app, State: apitypes.Running})
	if err != nil || len(running) != 1 {
		t.Fatalf("running %v, %v", running, err)
	}

	d.kill() // as a crash would
	tm.wait()
	d.restart()

	t.Run("a running one-off whose terminal went away is stopped", func(t *testing.T) {
		if f := d.waitFinished(running[0].ID); f.Outcome != apitypes.Lost {
			t.Errorf("outcome = %s, want %s", f.Outcome, apitypes.Lost)
		}
	})
	t.Run("a pending one-off can still be attached", func(t *testing.T) {
		pending.AttachURL = "tcp://" + d.attach + "/" + pending.ID // the port changed
		if got := runRaw(t, d, pending, "", ""); got != "survived\n" {
			t.Errorf("output = %q, want %q", got, "survived\n")
		}
		d.waitFinished(pending.ID)
	})
	d.waitNoContainers()
}

func TestDaemon_EngineDown(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--docker-host", "unix:///nonexistent/docker.sock")
	c := d.client()
	ctx := context.Background()
	if _, err := c.Deploy(ctx, "down", deployImage(t)); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateOneOff(ctx, "down", apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != "engine_unavailable" {
		t.Fatalf("create with the engine down: %v, want 503 engine_unavailable", err)
	}
	if !strings.Contains(ce.Message, "does not answer") {
		t.Errorf("message %q does not say what is wrong", ce.Message)
	}
	out, err := d.cli("--app", "down", "run", "true").CombinedOutput()
	if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "Docker engine") {
		t.Errorf("CLI: exit %d, %q; want 1 and a sentence about the engine", code, out)
	}
	list, err := c.OneOffs(ctx, client.Filter{App: "down"})
	if err != nil || len(list) != 2 {
		t.Fatalf("records %+v, %v; want two, from the API and from the CLI", list, err)
	}
	for _, o := range list {
		if o.Outcome != apitypes.Failed || !strings.Contains(o.Error, "does not answer") {
			t.Errorf("record %s: outcome %s, error %q; want failed, saying the engine does not answer", o.Name, o.Outcome, o.Error)
		}
	}
	t.Run("readyz says why", func(t *testing.T) {
		resp, err := http.Get(d.api + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || !strings.Contains(string(body), "engine") {
			t.Errorf("readyz = %d %s, want 503 naming the engine", resp.StatusCode, body)
		}
	})
}
