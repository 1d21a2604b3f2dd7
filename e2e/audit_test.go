package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// TestAudit runs a scripted session and reads its audit trail back, from
// the API and from the CLI.
func TestAudit(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--idle-timeout", "2s", "--stop-grace", "1s")
	app := d.deploy(nil, "")
	as := func(user string, args ...string) []byte {
		t.Helper()
		cmd := d.cli(append([]string{"--app", app}, args...)...)
		cmd.Env = append(cmd.Env, "ONEOFF_REQUESTER="+user)
		out, _ := cmd.CombinedOutput()
		return out
	}
	// alice runs a command; bob's shell is reaped; carol starts a job that
	// dave stops.
	as("alice@example.com", "run", "echo hi")
	tm := startInPTY(t, func() *exec.Cmd {
		c := d.cli("--app", app, "run", "sh")
		c.Env = append(c.Env, "ONEOFF_REQUESTER=bob@example.com")
		return c
	}(), 24, 80)
	tm.expect(`# `)
	tm.wait()
	out := as("carol@example.com", "run", "--detached", "sleep 600")
	id := strings.Fields(strings.SplitN(string(out), "(id ", 2)[1])[0]
	id = strings.TrimSuffix(strings.TrimSuffix(id, ","), ")")
	as("dave@example.com", "stop", id)
	d.waitNoContainers()

	events, err := d.client().Audit(context.Background(), client.AuditFilter{App: app})
	if err != nil {
		t.Fatal(err)
	}
	// Each one-off's events in order; the one-offs' events interleave as
	// they happened.
	byOneOff := map[string][]string{}
	var order []string
	for i := len(events) - 1; i >= 0; i-- { // oldest first
		e := events[i]
		if _, ok := byOneOff[e.OneOffID]; !ok {
			order = append(order, e.OneOffID)
		}
		byOneOff[e.OneOffID] = append(byOneOff[e.OneOffID], e.Action+" by "+e.Actor)
	}
	var got []string
	for _, id := range order {
		got = append(got, strings.Join(byOneOff[id], ", "))
	}
	want := []string{
		"create by alice@example.com, attach by alice@example.com, exit by oneoffd",
		"create by bob@example.com, attach by bob@example.com, reap by oneoffd, exit by oneoffd",
		"create by carol@example.com, stop by dave@example.com, exit by oneoffd",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail, one-off by one-off:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, e := range events {
		if e.App != app || e.OneOffID == "" || e.OneOffName == "" || e.Time.IsZero() {
			t.Errorf("event %+v lacks its app, one-off or time", e)
		}
	}
	t.Run("the CLI shows it", func(t *testing.T) {
		out := as("erin@example.com", "audit")
		for _, w := range []string{"alice@example.com", "reap", "no input or output for 2s", "dave@example.com", "stopped"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("oneoff audit lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("records outlive their containers", func(t *testing.T) {
		o, err := d.client().OneOff(context.Background(), id)
		if err != nil || o.Outcome != apitypes.Stopped || o.Requester != "carol@example.com" {
			t.Errorf("record %+v, %v", o, err)
		}
	})
}
