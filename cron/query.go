package cron

import (
	"context"
	"fmt"

	"github.com/oneoffd/oneoffd/errdefs"
)

// MaxHistory bounds the entries one history request returns.
const MaxHistory = 1000

// Jobs lists app's jobs with when they next run and how their last run
// went.
func (s *Scheduler) Jobs(ctx context.Context, app string) ([]JobStatus, error) {
	a, err := s.releases.App(ctx, app)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	pr := s.jobsOf(app, a.Release)
	now := s.cfg.Clock.Now()
	out := make([]JobStatus, 0, len(pr.jobs))
	for _, j := range pr.jobs {
		st := s.state(key{app, j.Name})
		next := j.Next(anchor(st, pr.since))
		if next.Before(now) {
			next = now // due: the loop is about to run it
		}
		out = append(out, JobStatus{Job: j, NextRunAt: next.UTC(), Failures: st.Failures})
	}
	s.mu.Unlock()
	for i := range out {
		runs, err := s.store.CronRuns(ctx, app, out[i].Name, 1)
		if err != nil {
			return nil, fmt.Errorf("list cron jobs of %q: %w", app, err)
		}
		if len(runs) > 0 {
			out[i].LastRun = &runs[0]
		}
	}
	return out, nil
}

// RunNow starts one of app's jobs at once, whatever its schedule and its
// overlap policy; requester, who asked, is the one-off's requester (the
// scheduler's when empty).
func (s *Scheduler) RunNow(ctx context.Context, app, job, requester string) (Run, error) {
	a, err := s.releases.App(ctx, app)
	if err != nil {
		return Run{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.jobsOf(app, a.Release)
	for _, j := range pr.jobs {
		if j.Name == job {
			s.log.Info("cron: run asked for", "app", app, "job", job, "requester", requester)
			now := s.cfg.Clock.Now()
			if requester == "" {
				requester = s.cfg.Requester
			}
			run, err := s.start(ctx, app, j, Manual, now, now, requester)
			if err != nil {
				// The one-off's own error, with its class: an engine down
				// is a 503, an image gone a 404, a quota a 429.
				return run, fmt.Errorf("cron job %q of app %q could not start: %w", job, app, err)
			}
			return run, nil
		}
	}
	return Run{}, notFound(app, job, pr.jobs)
}

// History returns a job's runs, newest first, at most limit of them.
func (s *Scheduler) History(ctx context.Context, app, job string, limit int) ([]Run, error) {
	a, err := s.releases.App(ctx, app)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxHistory {
		limit = MaxHistory
	}
	runs, err := s.store.CronRuns(ctx, app, job, limit)
	if err != nil {
		return nil, fmt.Errorf("read the history of cron job %q of %q: %w", job, app, err)
	}
	if len(runs) == 0 {
		s.mu.Lock()
		jobs := s.jobsOf(app, a.Release).jobs
		s.mu.Unlock()
		for _, j := range jobs {
			if j.Name == job {
				return []Run{}, nil
			}
		}
		return nil, notFound(app, job, jobs)
	}
	return runs, nil
}

func notFound(app, job string, jobs []Job) error {
	if len(jobs) == 0 {
		return errdefs.NotFound("cron_job_not_found", "app %q has no cron job %q: its current release has no cron jobs", app, job)
	}
	names := ""
	for i, j := range jobs {
		if i > 0 {
			names += ", "
		}
		names += j.Name
	}
	return errdefs.NotFound("cron_job_not_found", "app %q has no cron job %q: its jobs are %s", app, job, names)
}
