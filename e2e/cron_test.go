package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// TestCron_Runs deploys an app with two jobs due every two seconds, on a
// daemon whose minimum interval allows it: one prints and exits 3, the
// other sleeps past its next due time, which is skipped under forbid.
func TestCron_Runs(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--cron-min-interval", "1s")
	const app = "cron-e2e"
	file := filepath.Join(t.TempDir(), "cron.json")
	if err := os.WriteFile(file, []byte(`{"jobs": [
		{"name": "hello", "schedule": "@every 2s", "command": "echo cron says hello; exit 3", "size": "S"},
		{"name": "slow", "schedule": "@every 2s", "command": "sleep 5", "ttl": "1m"}
	]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	image := testenv.Image(t)
	if out, err := d.cli("--app", app, "deploy", "--image", image, "--cron", file).CombinedOutput(); err != nil {
		t.Fatalf("deploy --cron: %v: %s", err, out)
	}
	defer func() {
		// A release without cron jobs ends the scheduling; the runs under
		// way end by themselves.
		if out, err := d.cli("--app", app, "deploy", "--image", image).CombinedOutput(); err != nil {
			t.Errorf("deploy without cron: %v: %s", err, out)
		}
		time.Sleep(time.Second) // a tick under way at the deploy may still start one
		d.waitNoContainers()
	}()

	// A run of hello ends, exit status 3.
	ctx := context.Background()
	c := d.client()
	var hello apitypes.CronRun
	waitFor(t, "a finished run of hello", func() bool {
		runs, err := c.CronHistory(ctx, app, "hello", 10)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		for _, r := range runs {
			if r.Status == apitypes.CronStarted && r.State == apitypes.Finished && r.FinishedAt != nil {
				hello = r
				return true
			}
		}
		return false
	})
	if hello.Outcome != apitypes.Exited || hello.ExitCode == nil || *hello.ExitCode != 3 || !strings.HasPrefix(hello.OneOffName, "cron-hello-") {
		t.Errorf("run of hello: got %+v, want a one-off cron-hello-N that exited 3", hello)
	}
	o, err := c.OneOff(ctx, hello.OneOffID)
	if err != nil || o.Mode != apitypes.Detached || o.Requester != "cron" || o.Size != "S" {
		t.Errorf("hello's one-off: got %+v, %v, want detached, size S, asked for by cron", o, err)
	}

	// Its output is in the app's log, tagged with its name.
	out, err := d.cli("--app", app, "logs", "--filter", hello.OneOffName).CombinedOutput()
	if err != nil || !strings.Contains(string(out), hello.OneOffName+" stdout: cron says hello") {
		t.Errorf("logs --filter %s: got %v %q, want its line tagged with its name", hello.OneOffName, err, out)
	}

	// A due time of slow while its run still runs is skipped, and said so.
	var skip apitypes.CronRun
	waitFor(t, "a skipped run of slow", func() bool {
		runs, err := c.CronHistory(ctx, app, "slow", 20)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		for _, r := range runs {
			if r.Status == apitypes.CronRunStatus(cron.Skipped) {
				skip = r
				return true
			}
		}
		return false
	})
	if !strings.Contains(skip.Reason, "cron-slow-") || !strings.Contains(skip.Reason, "still runs") {
		t.Errorf("skip reason: got %q, want it to name the run still going", skip.Reason)
	}

	// oneoff cron shows both jobs, hello's last run with its exit code
	// once one has ended since.
	waitFor(t, "oneoff cron to show hello's exit code", func() bool {
		out, err := d.cli("--app", app, "cron").CombinedOutput()
		if err != nil {
			t.Fatalf("oneoff cron: %v: %s", err, out)
		}
		s := string(out)
		return strings.Contains(s, "slow") && strings.Contains(s, "@every 2s") &&
			strings.Contains(s, "cron-hello-") && strings.Contains(s, "exited (3)")
	})
	out, err = d.cli("--app", app, "cron", "history", "slow").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "skipped") || !strings.Contains(string(out), "overlap: forbid") {
		t.Errorf("cron history slow: got %v %s, want the skip and why", err, out)
	}

	// A run asked for now starts at once.
	out, err = d.cli("--app", app, "cron", "run", "hello").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "started cron-hello-") {
		t.Errorf("cron run hello: got %v %s", err, out)
	}

	// A bad definition is refused, naming the job, and registers nothing.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"jobs": [{"name": "big", "schedule": "@every 1m", "command": "true", "size": "XXL"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = d.cli("--app", app, "deploy", "--image", image, "--cron", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `cron job "big": size "XXL" is unknown`) {
		t.Errorf("deploy with an unknown size: got %v %s, want a refusal naming it", err, out)
	}
	a, err := c.App(ctx, app)
	if err != nil || a.Release == nil || a.Release.Version != 1 {
		t.Errorf("app after a refused release: got %+v, %v, want release 1 still", a.Release, err)
	}
}

// waitFor polls cond until it holds, for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after a minute", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCron_Restart stops the daemon for a few due times of a job: back up,
// it runs the job once for them, late, then on schedule again.
func TestCron_Restart(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--cron-min-interval", "1s")
	const app = "cron-e2e-restart"
	ctx := context.Background()
	image := testenv.Image(t)
	if _, err := d.client().Deploy(ctx, app, apitypes.Deploy{Image: image,
		Cron: []byte(`{"jobs": [{"name": "tick", "schedule": "@every 2s", "command": "echo tick"}]}`)}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	defer func() {
		if _, err := d.client().Deploy(ctx, app, apitypes.Deploy{Image: image}); err != nil {
			t.Errorf("deploy without cron: %v", err)
		}
		time.Sleep(time.Second)
		d.waitNoContainers()
	}()
	history := func() []apitypes.CronRun {
		runs, err := d.client().CronHistory(ctx, app, "tick", 100)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		return runs
	}
	waitFor(t, "a run of tick", func() bool { return len(history()) > 0 })

	d.stop()
	time.Sleep(5 * time.Second) // two due times or more pass
	d.restart()
	before := history()
	last := before[0].ScheduledAt
	var after []apitypes.CronRun // oldest first
	waitFor(t, "two runs after the restart", func() bool {
		after = nil
		for _, r := range history() {
			if r.ScheduledAt.After(last) {
				after = append([]apitypes.CronRun{r}, after...)
			}
		}
		return len(after) >= 2
	})
	catchUp, next := after[0], after[1]
	if catchUp.Trigger != string(cron.CatchUp) || catchUp.Status != apitypes.CronStarted {
		t.Errorf("first run after the restart: got %+v, want a started catch-up", catchUp)
	}
	if gap := catchUp.ScheduledAt.Sub(last); gap < 4*time.Second {
		t.Errorf("the catch-up is for %s, %s after the last run before the stop: want the due times between given up", catchUp.ScheduledAt, gap)
	}
	if next.Trigger != string(cron.Scheduled) || !next.ScheduledAt.Equal(catchUp.ScheduledAt.Add(2*time.Second)) {
		t.Errorf("second run after the restart: got %+v, want the next due time on schedule, not another missed one", next)
	}
}
