package cron

import (
	"context"
	"encoding/json"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/oneoff"
)

// Status says what came of a job's due time.
type Status string

// The statuses.
const (
	// Started: a one-off runs or ran for it.
	Started Status = "started"
	// Skipped: the previous run still ran and the job forbids overlap.
	Skipped Status = "skipped"
	// Missed: the daemon was down at the due time, and back too late to
	// start it within the job's deadline.
	Missed Status = "missed"
	// StartFailed: the one-off could not be started.
	StartFailed Status = "start_failed"
)

// Trigger says why a run was attempted.
type Trigger string

// The triggers.
const (
	// Scheduled: the job came due.
	Scheduled Trigger = "schedule"
	// CatchUp: due times passed while the daemon was down; the latest is
	// run once, late but within the deadline.
	CatchUp Trigger = "catch_up"
	// Manual: someone asked for a run now.
	Manual Trigger = "manual"
)

// Run is one entry of a job's history: a run started, skipped, missed or
// failed to start.
type Run struct {
	Seq     int64   `json:"seq"`
	App     string  `json:"app"`
	Job     string  `json:"job"`
	Trigger Trigger `json:"trigger"`
	Status  Status  `json:"status"`
	// ScheduledAt is the due time; for a manual run, when it was asked for.
	ScheduledAt time.Time `json:"scheduled_at"`
	// At is when the scheduler acted on it.
	At time.Time `json:"at"`
	// OneOffID and OneOffName name the one-off of a started run.
	OneOffID   string `json:"oneoff_id,omitempty"`
	OneOffName string `json:"oneoff_name,omitempty"`
	// Reason says why a run was skipped, missed or failed to start.
	Reason string `json:"reason,omitempty"`
	// State is the one-off's, while it has not finished; then Outcome,
	// ExitCode and FinishedAt say how it ended.
	State      oneoff.State   `json:"state,omitempty"`
	Outcome    oneoff.Outcome `json:"outcome,omitempty"`
	ExitCode   *int           `json:"exit_code,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
}

// Succeeded reports whether the run's command exited with status 0.
func (r Run) Succeeded() bool {
	return r.Outcome == oneoff.Exited && r.ExitCode != nil && *r.ExitCode == 0
}

// State is what the scheduler remembers of a job between due times.
type State struct {
	App string
	Job string
	// LastTick is the latest due time handled: run, skipped or missed.
	LastTick time.Time
	// LastOneOff is the ID of the job's latest one-off, for the overlap
	// policy.
	LastOneOff string
	// Failures counts the job's runs that failed in a row.
	Failures int
}

// JobStatus is a job as listed: its definition, when it next runs and how
// its last run went.
type JobStatus struct {
	Job
	NextRunAt time.Time `json:"next_run_at"`
	LastRun   *Run      `json:"last_run,omitempty"`
	// Failures counts the runs that failed in a row, up to the last one.
	Failures int `json:"consecutive_failures"`
}

// MarshalJSON writes the job's definition with its status.
func (s JobStatus) MarshalJSON() ([]byte, error) {
	type status struct {
		Name      string    `json:"name"`
		Schedule  string    `json:"schedule"`
		Timezone  string    `json:"timezone"`
		Command   string    `json:"command"`
		Size      string    `json:"size,omitempty"`
		TTL       string    `json:"ttl,omitempty"`
		Overlap   Overlap   `json:"overlap"`
		NextRunAt time.Time `json:"next_run_at"`
		LastRun   *Run      `json:"last_run,omitempty"`
		Failures  int       `json:"consecutive_failures"`
	}
	tz := s.Timezone
	if tz == "" {
		tz = "UTC"
	}
	return json.Marshal(status{s.Name, s.Schedule, tz, s.Command, s.Size, s.TTL, s.overlap(), s.NextRunAt, s.LastRun, s.Failures})
}

// Starter starts and follows one-offs; *oneoff.Manager is one.
type Starter interface {
	Create(ctx context.Context, app string, req oneoff.Request) (oneoff.OneOff, string, error)
	Get(ctx context.Context, id string) (oneoff.OneOff, error)
	Stop(ctx context.Context, id, actor string) (oneoff.OneOff, error)
	// Done is closed once one-off id has finished, or is not followed.
	Done(id string) <-chan struct{}
}

// Releases tells the apps and their current releases; *deploy.Service is one.
type Releases interface {
	Apps(ctx context.Context) ([]deploy.App, error)
	App(ctx context.Context, name string) (deploy.App, error)
}

// Store keeps the scheduler's state and the jobs' history.
type Store interface {
	// CronStates returns the state of every job that has one.
	CronStates(ctx context.Context) ([]State, error)
	// AddCronRun records run and st together, and returns run with its Seq.
	AddCronRun(ctx context.Context, run Run, st State) (Run, error)
	// FinishCronRun records how a started run ended, and st with it.
	FinishCronRun(ctx context.Context, run Run, st State) error
	// CronRuns returns a job's history, newest first, at most limit entries.
	CronRuns(ctx context.Context, app, job string, limit int) ([]Run, error)
	// UnfinishedCronRuns returns the started runs whose end is not recorded.
	UnfinishedCronRuns(ctx context.Context) ([]Run, error)
}
