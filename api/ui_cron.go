package api

import (
	"context"
	"fmt"
	"time"

	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/oneoff"
)

// uiCronRow is one cron job on the operators' page, formatted.
type uiCronRow struct {
	App, Name, Schedule string
	Command, FullCmd    string
	Overlap, Next       string
	LastName, LastAgo   string
	Status, Class       string
	Detail              string
}

// uiCron lists the cron jobs of apps for the page; an app whose jobs
// cannot be read is left out.
func (s *Server) uiCron(ctx context.Context, apps []string, now time.Time) []uiCronRow {
	if s.cron == nil {
		return nil
	}
	var rows []uiCronRow
	for _, app := range apps {
		jobs, err := s.cron.Jobs(ctx, app)
		if err != nil {
			continue
		}
		for _, j := range jobs {
			sched := j.Schedule
			if j.Timezone != "" && j.Timezone != "UTC" {
				sched += " (" + j.Timezone + ")"
			}
			row := uiCronRow{App: app, Name: j.Name, Schedule: sched, Command: truncateRunes(j.Command, uiCommandWidth), FullCmd: j.Command,
				Overlap: string(j.Overlap), Next: "now", LastName: "—", LastAgo: "—", Status: "never run", Class: "stopped"}
			if row.Overlap == "" {
				row.Overlap = string(cron.Forbid)
			}
			if d := j.NextRunAt.Sub(now); d > 0 {
				row.Next = "in " + humanDuration(d)
			}
			if r := j.LastRun; r != nil {
				row.LastName, row.LastAgo = dash(r.OneOffName), humanDuration(now.Sub(r.At))+" ago"
				row.Status, row.Class, row.Detail = uiRunStatus(*r)
			}
			if j.Failures > 1 {
				row.Detail = fmt.Sprintf("%d failed in a row", j.Failures)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// uiRunStatus says how a cron run went, with the badge's class.
func uiRunStatus(r cron.Run) (status, class, detail string) {
	switch {
	case r.Status == cron.Skipped:
		return "skipped", "warn", r.Reason
	case r.Status == cron.Missed:
		return "missed", "warn", r.Reason
	case r.Status == cron.StartFailed:
		return "start failed", "bad", r.Reason
	case r.State != oneoff.Finished:
		return "running", "running", ""
	}
	o := oneoff.OneOff{Outcome: r.Outcome, ExitCode: r.ExitCode}
	return outcomeText(o), outcomeClass(o), ""
}
