package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestDB_CreateRelease_Cron(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	doc := `{"jobs":[{"name":"cleanup","schedule":"*/10 * * * *","command":"rake cleanup"}]}`
	rel := testRelease("web")
	rel.Cron = json.RawMessage(doc)
	if _, err := db.CreateRelease(ctx, rel); err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	a, err := db.App(ctx, "web")
	if err != nil {
		t.Fatalf("App: %v", err)
	}
	if got := string(a.Release.Cron); got != doc {
		t.Errorf("cron: got %s, want %s", got, doc)
	}
	if _, err := db.CreateRelease(ctx, testRelease("web")); err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	if a, err = db.App(ctx, "web"); err != nil {
		t.Fatalf("App: %v", err)
	}
	if a.Release.Cron != nil {
		t.Errorf("a release without cron jobs: got cron %s, want none", a.Release.Cron)
	}
}

func TestDB_CronRuns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "oneoffd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	due := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := minimalOneOff("o1", "web", due)
	o.Name, o.State = "cron-cleanup-1234", oneoff.Running
	if err := db.CreateOneOff(ctx, o); err != nil {
		t.Fatalf("CreateOneOff: %v", err)
	}
	st := cron.State{App: "web", Job: "cleanup", LastTick: due, LastOneOff: "o1"}
	started, err := db.AddCronRun(ctx, cron.Run{App: "web", Job: "cleanup", Trigger: cron.Scheduled, Status: cron.Started,
		ScheduledAt: due, At: due.Add(time.Second), OneOffID: "o1", OneOffName: o.Name}, st)
	if err != nil {
		t.Fatalf("AddCronRun: %v", err)
	}
	if started.Seq == 0 {
		t.Fatal("AddCronRun: no seq")
	}
	st.LastTick = due.Add(10 * time.Minute)
	if _, err := db.AddCronRun(ctx, cron.Run{App: "web", Job: "cleanup", Trigger: cron.Scheduled, Status: cron.Skipped,
		ScheduledAt: st.LastTick, At: st.LastTick, Reason: "the previous run still runs"}, st); err != nil {
		t.Fatalf("AddCronRun: %v", err)
	}

	runs, err := db.CronRuns(ctx, "web", "cleanup", 10)
	if err != nil {
		t.Fatalf("CronRuns: %v", err)
	}
	if len(runs) != 2 || runs[0].Status != cron.Skipped || runs[1].Status != cron.Started {
		t.Fatalf("CronRuns: got %+v, want the skip then the start, newest first", runs)
	}
	if got := runs[1]; got.State != oneoff.Running || got.OneOffName != o.Name || got.FinishedAt != nil {
		t.Errorf("unfinished run: got %+v, want the one-off's running state", got)
	}
	unfinished, err := db.UnfinishedCronRuns(ctx)
	if err != nil || len(unfinished) != 1 || unfinished[0].Seq != started.Seq {
		t.Fatalf("UnfinishedCronRuns: got %+v, %v, want the started run", unfinished, err)
	}

	// The end, recorded; it outlives the database being reopened.
	code := 3
	end := due.Add(time.Minute)
	started.Outcome, started.ExitCode, started.FinishedAt = oneoff.Exited, &code, &end
	st.Failures = 1
	if err := db.FinishCronRun(ctx, started, st); err != nil {
		t.Fatalf("FinishCronRun: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if db, err = Open(path); err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer db.Close()
	runs, err = db.CronRuns(ctx, "web", "cleanup", 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("CronRuns limit 1: got %+v, %v", runs, err)
	}
	if runs, err = db.CronRuns(ctx, "web", "cleanup", 10); err != nil {
		t.Fatalf("CronRuns: %v", err)
	}
	got := runs[1]
	if got.State != oneoff.Finished || got.Outcome != oneoff.Exited || got.ExitCode == nil || *got.ExitCode != 3 || got.FinishedAt == nil || !got.FinishedAt.Equal(end) {
		t.Errorf("finished run: got %+v, want exited 3 at %s", got, end)
	}
	if unfinished, err = db.UnfinishedCronRuns(ctx); err != nil || len(unfinished) != 0 {
		t.Errorf("UnfinishedCronRuns: got %+v, %v, want none", unfinished, err)
	}
	states, err := db.CronStates(ctx)
	if err != nil {
		t.Fatalf("CronStates: %v", err)
	}
	if len(states) != 1 || states[0] != st {
		t.Errorf("CronStates: got %+v, want %+v", states, st)
	}
	if runs, err := db.CronRuns(ctx, "web", "other", 10); err != nil || len(runs) != 0 {
		t.Errorf("CronRuns of another job: got %+v, %v, want none", runs, err)
	}
	var _ deploy.Store = db
}

func TestDB_AddCronRun_keepsTheLatest(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	defer func(n int) { cronRunsKept = n }(cronRunsKept)
	cronRunsKept = 3
	due := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		for _, job := range []string{"a", "b"} {
			at := due.Add(time.Duration(i) * time.Minute)
			if _, err := db.AddCronRun(ctx, cron.Run{App: "web", Job: job, Trigger: cron.Scheduled, Status: cron.Skipped, ScheduledAt: at, At: at},
				cron.State{App: "web", Job: job, LastTick: at}); err != nil {
				t.Fatalf("AddCronRun: %v", err)
			}
		}
	}
	for _, job := range []string{"a", "b"} {
		runs, err := db.CronRuns(ctx, "web", job, 10)
		if err != nil {
			t.Fatalf("CronRuns: %v", err)
		}
		if len(runs) != 3 || !runs[0].ScheduledAt.Equal(due.Add(4*time.Minute)) || !runs[2].ScheduledAt.Equal(due.Add(2*time.Minute)) {
			t.Errorf("job %s: got %d runs %+v, want the latest 3", job, len(runs), runs)
		}
	}
}
