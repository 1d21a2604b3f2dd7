package cron

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// t0 is when the test releases are registered.
var t0 = time.Date(2026, 3, 2, 12, 3, 0, 0, time.UTC)

type harness struct {
	t        *testing.T
	clock    *clockwork.FakeClock
	starter  *fakeStarter
	releases *fakeReleases
	store    *memStore
	reg      *prometheus.Registry
	s        *Scheduler
	version  int
}

// newHarness returns a scheduler on a fake clock at t0, its loop not
// running: the test calls tick.
func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clock: clockwork.NewFakeClockAt(t0), starter: newFakeStarter(), releases: &fakeReleases{}, store: newMemStore()}
	h.s = h.newScheduler()
	h.s.ctx, h.s.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { h.s.cancel(); h.s.wg.Wait() })
	return h
}

func (h *harness) newScheduler() *Scheduler {
	h.reg = prometheus.NewRegistry()
	return New(Config{Clock: h.clock, Metrics: h.reg}, h.starter, h.releases, h.store, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// deploy registers a release of app "web" with the cron document doc, now.
func (h *harness) deploy(doc string) {
	h.t.Helper()
	h.version++
	norm, err := h.s.cfg.Rules.Check("web", []byte(doc))
	if err != nil {
		h.t.Fatalf("Check: %v", err)
	}
	h.releases.set(deploy.Release{App: "web", Version: h.version, Image: "web:1", Cron: norm, CreatedAt: h.clock.Now()})
}

// at sets the clock and runs what is due.
func (h *harness) at(t time.Time) {
	h.t.Helper()
	h.clock.Advance(t.Sub(h.clock.Now()))
	h.s.tick(context.Background())
}

func (h *harness) runs() []Run { return h.store.all() }

// finish ends one-off id with exit status code and waits until the
// scheduler knows.
func (h *harness) finish(id string, code int) {
	h.t.Helper()
	h.starter.finish(id, code)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.s.mu.Lock()
		under := false
		for _, ids := range h.s.running {
			_, ok := ids[id]
			under = under || ok
		}
		h.s.mu.Unlock()
		if !under {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the scheduler did not learn of the end of %s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) wantRuns(statuses ...Status) []Run {
	h.t.Helper()
	runs := h.runs()
	if len(runs) != len(statuses) {
		h.t.Fatalf("runs: got %d %+v, want %v", len(runs), runs, statuses)
	}
	for i, st := range statuses {
		if runs[i].Status != st {
			h.t.Errorf("run %d: got status %s, want %s (%+v)", i, runs[i].Status, st, runs[i])
		}
	}
	return runs
}

func at(h, m int) time.Time { return time.Date(2026, 3, 2, h, m, 0, 0, time.UTC) }

const every10 = `{"jobs": [{"name": "cleanup", "schedule": "*/10 * * * *", "command": "rake cleanup", "size": "M", "ttl": "1h"}]}`

func TestScheduler_Runs(t *testing.T) {
	h := newHarness(t)
	h.deploy(every10)
	h.at(at(12, 9))
	h.wantRuns()
	h.at(at(12, 10))
	runs := h.wantRuns(Started)
	reqs := h.starter.requests()
	req := reqs[0]
	if req.NamePrefix != "cron-cleanup" || req.Requester != "cron" || !req.Detached || req.Command.Line != "rake cleanup" || req.Size != "M" || req.TTL != time.Hour {
		t.Errorf("request: got %+v", req)
	}
	if r := runs[0]; r.Trigger != Scheduled || !r.ScheduledAt.Equal(at(12, 10)) || r.OneOffName != "cron-cleanup-1001" {
		t.Errorf("run: got %+v", r)
	}
	// The same due time is not run twice.
	h.at(at(12, 10).Add(30 * time.Second))
	h.wantRuns(Started)
	if got := testutil.CollectAndCount(h.reg, "oneoffd_cron_schedule_delay_seconds"); got != 1 {
		t.Errorf("delay histogram: got %d series, want 1", got)
	}
}

func TestScheduler_Overlap(t *testing.T) {
	doc := func(policy string) string {
		return `{"jobs": [{"name": "cleanup", "schedule": "*/10 * * * *", "command": "x", "overlap": "` + policy + `"}]}`
	}
	t.Run("forbid skips and records the skip", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(`{"jobs": [{"command": "*/10 * * * * x"}]}`) // forbid by default
		h.at(at(12, 10))
		h.at(at(12, 20))
		runs := h.wantRuns(Started, Skipped)
		if len(h.starter.requests()) != 1 {
			t.Errorf("creates: got %d, want 1", len(h.starter.requests()))
		}
		if want := "the previous run cron-x-1001 still runs"; runs[1].Reason[:len(want)] != want {
			t.Errorf("skip reason: got %q, want it to start with %q", runs[1].Reason, want)
		}
		if got := testutil.ToFloat64(h.s.met.skips); got != 1 {
			t.Errorf("skips: got %v, want 1", got)
		}
		h.finish(runs[0].OneOffID, 0)
		h.at(at(12, 30))
		h.wantRuns(Started, Skipped, Started)
	})
	t.Run("allow runs alongside", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(doc("allow"))
		h.at(at(12, 10))
		h.at(at(12, 20))
		h.wantRuns(Started, Started)
	})
	t.Run("replace stops the previous run", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(doc("replace"))
		h.at(at(12, 10))
		h.at(at(12, 20))
		runs := h.wantRuns(Started, Started)
		if len(h.starter.stops) != 1 || h.starter.stops[0] != runs[0].OneOffID {
			t.Errorf("stops: got %v, want %s", h.starter.stops, runs[0].OneOffID)
		}
	})
	t.Run("a manual run under way counts as the previous run", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(doc("forbid"))
		h.at(at(12, 10))
		h.finish(h.runs()[0].OneOffID, 0)
		manual, err := h.s.RunNow(context.Background(), "web", "cleanup", "alice")
		if err != nil {
			t.Fatalf("RunNow: %v", err)
		}
		h.at(at(12, 20))
		runs := h.wantRuns(Started, Started, Skipped)
		if !strings.Contains(runs[2].Reason, manual.OneOffName) {
			t.Errorf("skip reason: got %q, want it to name %s", runs[2].Reason, manual.OneOffName)
		}
	})
	t.Run("replace stops every run under way", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(doc("replace"))
		h.at(at(12, 10))
		if _, err := h.s.RunNow(context.Background(), "web", "cleanup", "alice"); err != nil {
			t.Fatalf("RunNow: %v", err)
		}
		h.at(at(12, 20))
		h.wantRuns(Started, Started, Started)
		if len(h.starter.stops) != 2 {
			t.Errorf("stops: got %v, want both runs under way", h.starter.stops)
		}
	})
	t.Run("a manual run ignores the policy", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(doc("forbid"))
		h.at(at(12, 10))
		run, err := h.s.RunNow(context.Background(), "web", "cleanup", "alice")
		if err != nil {
			t.Fatalf("RunNow: %v", err)
		}
		if run.Trigger != Manual || run.Status != Started {
			t.Errorf("RunNow: got %+v", run)
		}
		if reqs := h.starter.requests(); reqs[len(reqs)-1].Requester != "alice" {
			t.Errorf("manual run's requester: got %q, want alice", reqs[len(reqs)-1].Requester)
		}
		if _, err := h.s.RunNow(context.Background(), "web", "nope", "alice"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("RunNow of an unknown job: got %v, want not found", err)
		}
	})
}

func TestScheduler_MissedRuns(t *testing.T) {
	t.Run("after downtime the latest due time runs once", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(every10)
		h.at(at(12, 10))
		h.finish(h.runs()[0].OneOffID, 0)
		// Down from 12:11 to 15:05: 17 due times passed.
		h.at(at(15, 5))
		runs := h.wantRuns(Started, Started)
		if r := runs[1]; r.Trigger != CatchUp || !r.ScheduledAt.Equal(at(15, 0)) {
			t.Errorf("catch-up run: got %+v, want one for 15:00", r)
		}
		if got := testutil.ToFloat64(h.s.met.misses); got != 1 {
			t.Errorf("misses: got %v, want 1", got)
		}
		h.at(at(15, 9))
		h.wantRuns(Started, Started)
	})
	t.Run("past the deadline one miss is recorded and nothing runs", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(`{"jobs": [{"name": "nightly", "schedule": "0 3 * * *", "command": "x"}]}`)
		// Down over 03:00 and back at 05:00, past the one-hour deadline.
		h.at(time.Date(2026, 3, 3, 5, 0, 0, 0, time.UTC))
		runs := h.wantRuns(Missed)
		if !runs[0].ScheduledAt.Equal(time.Date(2026, 3, 3, 3, 0, 0, 0, time.UTC)) {
			t.Errorf("missed run: got %+v", runs[0])
		}
		h.at(time.Date(2026, 3, 3, 5, 1, 0, 0, time.UTC))
		h.wantRuns(Missed)
		h.at(time.Date(2026, 3, 4, 3, 0, 0, 0, time.UTC))
		h.wantRuns(Missed, Started)
	})
	t.Run("a restarted scheduler picks up where the last stopped", func(t *testing.T) {
		h := newHarness(t)
		h.deploy(every10)
		h.at(at(12, 10))
		h.finish(h.runs()[0].OneOffID, 0)
		// A new scheduler on the same store, at 12:15: nothing is due again.
		h.s.cancel()
		h.s.wg.Wait()
		h.s = h.newScheduler()
		if err := h.s.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		defer h.s.Close(context.Background())
		if err := h.clock.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		h.wantRuns(Started)
		// The loop sleeps until 12:20, then runs the job.
		h.clock.Advance(at(12, 20).Sub(h.clock.Now()))
		select {
		case <-h.starter.created:
			<-h.starter.created // the first run's
		case <-time.After(10 * time.Second):
			t.Fatal("the job did not run at 12:20")
		}
	})
}

func TestScheduler_RestartWithARunUnderWay(t *testing.T) {
	h := newHarness(t)
	h.deploy(every10)
	h.at(at(12, 10))
	prev := h.runs()[0]
	// The daemon stops at 12:11 with the run under way and is back at
	// 15:05; the run ended meanwhile, which the manager learns shortly
	// after its start.
	h.s.cancel()
	h.s.wg.Wait()
	h.s = h.newScheduler()
	h.s.ctx, h.s.cancel = context.WithCancel(context.Background())
	if err := h.s.load(context.Background()); err != nil {
		t.Fatalf("load: %v", err)
	}
	h.at(at(15, 5))
	h.wantRuns(Started) // the late run waits to know
	h.finish(prev.OneOffID, 0)
	deadline := time.Now().Add(10 * time.Second)
	for h.runs()[0].FinishedAt == nil {
		if time.Now().After(deadline) {
			t.Fatal("the end of the run under way was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.at(at(15, 6))
	runs := h.wantRuns(Started, Started)
	if r := runs[1]; r.Trigger != CatchUp || !r.ScheduledAt.Equal(at(15, 0)) {
		t.Errorf("late run: got %+v, want one catch-up for 15:00", r)
	}
}

func TestScheduler_Releases(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.deploy(every10)
	h.at(at(12, 10))
	h.deploy(`{"jobs": [{"name": "report", "schedule": "15 * * * *", "command": "./report"}]}`)
	// At 12:20 cleanup is gone; report, due at 12:15, runs late.
	h.at(at(12, 20))
	runs := h.wantRuns(Started, Started)
	if runs[1].Job != "report" || !runs[1].ScheduledAt.Equal(at(12, 15)) {
		t.Errorf("after the new release: got %+v, want a run of report for 12:15", runs[1])
	}
	jobs, err := h.s.Jobs(ctx, "web")
	if err != nil || len(jobs) != 1 || jobs[0].Name != "report" || !jobs[0].NextRunAt.Equal(at(13, 15)) || jobs[0].LastRun == nil {
		t.Fatalf("Jobs: got %+v, %v, want report next at 13:15 with its last run", jobs, err)
	}
	if hist, err := h.s.History(ctx, "web", "cleanup", 10); err != nil || len(hist) != 1 {
		t.Errorf("History of a removed job: got %+v, %v, want its run", hist, err)
	}
	if _, err := h.s.History(ctx, "web", "nope", 10); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("History of an unknown job: got %v, want not found", err)
	}

	// A release without cron removes the jobs.
	h.version++
	h.releases.set(deploy.Release{App: "web", Version: h.version, Image: "web:2", CreatedAt: h.clock.Now()})
	h.at(at(16, 0))
	h.wantRuns(Started, Started)
	if jobs, err := h.s.Jobs(ctx, "web"); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs: got %+v, %v, want none", jobs, err)
	}
	if _, err := h.s.Jobs(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Jobs of an unknown app: got %v, want not found", err)
	}
}

func TestScheduler_Outcomes(t *testing.T) {
	h := newHarness(t)
	h.deploy(`{"jobs": [{"name": "cleanup", "schedule": "*/10 * * * *", "command": "x", "overlap": "allow"}]}`)
	waitFinished := func(seq int64) Run {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if r := h.runs()[seq-1]; r.FinishedAt != nil {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("run %d: its end was not recorded", seq)
		return Run{}
	}
	failures := func() float64 {
		return testutil.ToFloat64(h.s.met.failures.WithLabelValues("web", "cleanup"))
	}
	h.at(at(12, 10))
	h.finish(h.runs()[0].OneOffID, 2)
	if r := waitFinished(1); r.Outcome != oneoff.Exited || *r.ExitCode != 2 || r.Succeeded() {
		t.Errorf("run: got %+v, want exited 2", r)
	}
	h.at(at(12, 20))
	h.finish(h.runs()[1].OneOffID, 1)
	waitFinished(2)
	if got := failures(); got != 2 {
		t.Errorf("consecutive failures: got %v, want 2", got)
	}
	h.starter.fail = errdefs.Conflict("no_release", "app has no release")
	h.at(at(12, 30))
	if runs := h.wantRuns(Started, Started, StartFailed); runs[2].Reason != "app has no release" {
		t.Errorf("start failure reason: got %q", runs[2].Reason)
	}
	if got := failures(); got != 3 {
		t.Errorf("consecutive failures: got %v, want 3", got)
	}
	h.starter.fail = nil
	h.at(at(12, 40))
	h.finish(h.runs()[3].OneOffID, 0)
	waitFinished(4)
	if got := failures(); got != 0 {
		t.Errorf("consecutive failures after a success: got %v, want 0", got)
	}
	if got := testutil.ToFloat64(h.s.met.runs.WithLabelValues("failed")); got != 2 {
		t.Errorf("failed runs: got %v, want 2", got)
	}
	if got := testutil.ToFloat64(h.s.met.runs.WithLabelValues("succeeded")); got != 1 {
		t.Errorf("succeeded runs: got %v, want 1", got)
	}
	// The job gone, so is its series.
	h.version++
	h.releases.set(deploy.Release{App: "web", Version: h.version, Image: "web:2", CreatedAt: h.clock.Now()})
	h.at(at(12, 41))
	if got := testutil.CollectAndCount(h.s.met.failures); got != 0 {
		t.Errorf("failure series after the job went: got %d, want 0", got)
	}
}
