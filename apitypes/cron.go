package apitypes

import "time"

// CronRunStatus says what came of a cron job's due time: started, skipped,
// missed or start_failed.
type CronRunStatus string

// CronStarted is the status of a run whose one-off was started.
const CronStarted CronRunStatus = "started"

// CronJob is a cron job of an app's release, with how its runs go.
type CronJob struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone"`
	Command  string `json:"command"`
	Size     string `json:"size,omitempty"`
	TTL      string `json:"ttl,omitempty"`
	// Overlap is forbid, allow or replace.
	Overlap   string    `json:"overlap"`
	NextRunAt time.Time `json:"next_run_at"`
	LastRun   *CronRun  `json:"last_run,omitempty"`
	// Failures counts the runs that failed in a row, up to the last one.
	Failures int `json:"consecutive_failures"`
}

// CronRun is one entry of a cron job's history.
type CronRun struct {
	Seq int64  `json:"seq"`
	App string `json:"app"`
	Job string `json:"job"`
	// Trigger is schedule, catch_up or manual.
	Trigger     string        `json:"trigger"`
	Status      CronRunStatus `json:"status"`
	ScheduledAt time.Time     `json:"scheduled_at"`
	At          time.Time     `json:"at"`
	OneOffID    string        `json:"oneoff_id,omitempty"`
	OneOffName  string        `json:"oneoff_name,omitempty"`
	Reason      string        `json:"reason,omitempty"`
	State       State         `json:"state,omitempty"`
	Outcome     Outcome       `json:"outcome,omitempty"`
	ExitCode    *int          `json:"exit_code,omitempty"`
	FinishedAt  *time.Time    `json:"finished_at,omitempty"`
}

// CronJobs is the answer to GET /v1/apps/{app}/cron.
type CronJobs struct {
	Jobs []CronJob `json:"jobs"`
}

// CronRuns is the answer to GET /v1/apps/{app}/cron/{job}/runs.
type CronRuns struct {
	Runs []CronRun `json:"runs"`
}
