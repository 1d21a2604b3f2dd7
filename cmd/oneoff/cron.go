package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/apitypes"
)

func cronCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cron",
		Short: "List an app's cron jobs: schedule, next run, last run and its outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, c, err := g.appClient()
			if err != nil {
				return err
			}
			jobs, err := c.CronJobs(cmd.Context(), app)
			if err != nil {
				return err
			}
			if len(jobs) == 0 {
				fmt.Fprintf(g.out, "%s has no cron jobs: deploy with --cron cron.json to add some\n", app)
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSCHEDULE\tNEXT RUN\tLAST RUN\tRESULT\tCOMMAND")
			for _, j := range jobs {
				sched := j.Schedule
				if j.Timezone != "" && j.Timezone != "UTC" {
					sched += " (" + j.Timezone + ")"
				}
				last, result := "-", "-"
				if r := j.LastRun; r != nil {
					last = fmt.Sprintf("%s ago", age(r.At))
					if r.OneOffName != "" {
						last = r.OneOffName + ", " + last
					}
					result = runResult(*r)
				}
				if j.Failures > 1 {
					result += fmt.Sprintf(", %d failed in a row", j.Failures)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, sched, until(j.NextRunAt), last, result, truncate(j.Command, 40))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(cronRunCommand(g), cronHistoryCommand(g))
	return cmd
}

func cronRunCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run NAME",
		Short: "Start a cron job now, as a detached one-off",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app, c, err := g.appClient()
			if err != nil {
				return err
			}
			run, err := c.RunCronJob(cmd.Context(), app, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "started %s (%s); its output: oneoff --app %s logs --filter %s\n", run.OneOffName, run.OneOffID, app, run.OneOffName)
			return nil
		},
	}
}

func cronHistoryCommand(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history NAME [-n N]",
		Short: "Show a cron job's runs, newest first: started, skipped, missed or failed to start",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app, c, err := g.appClient()
			if err != nil {
				return err
			}
			runs, err := c.CronHistory(cmd.Context(), app, args[0], limit)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DUE\tTRIGGER\tONEOFF\tRESULT\tREASON")
			for _, r := range runs {
				name := r.OneOffName
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ScheduledAt.Local().Format(time.DateTime), r.Trigger, name, runResult(r), truncate(r.Reason, 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVarP(&limit, "lines", "n", 20, "show at most this many runs")
	return cmd
}

// runResult says how a run went: its one-off's state or outcome with the
// exit code, or why there was none.
func runResult(r apitypes.CronRun) string {
	if r.Status != apitypes.CronStarted {
		return string(r.Status)
	}
	if r.FinishedAt == nil && r.State != apitypes.Finished {
		if r.State == "" {
			return string(apitypes.Running)
		}
		return string(r.State)
	}
	if r.ExitCode != nil {
		return fmt.Sprintf("%s (%d)", r.Outcome, *r.ExitCode)
	}
	return string(r.Outcome)
}

// until says when t comes, from now: to the second within a minute, to
// the minute within a day, to the hour beyond.
func until(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return "in " + d.String()
	case d < 24*time.Hour:
		return "in " + strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return "in " + strings.TrimSuffix(d.Round(time.Hour).String(), "0m0s")
}
