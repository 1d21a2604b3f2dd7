package cron

import (
	"errors"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// watch follows a started run to its end, then records how it ended.
func (s *Scheduler) watch(run Run) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.starter.Done(run.OneOffID):
			case <-s.ctx.Done():
				return
			}
			o, err := s.starter.Get(s.ctx, run.OneOffID)
			switch {
			case err == nil && o.State == oneoff.Finished:
				s.finish(run, o)
				return
			case errors.Is(err, errdefs.ErrNotFound):
				s.finish(run, oneoff.OneOff{State: oneoff.Finished, Outcome: oneoff.Lost, FinishedAt: ptr(s.cfg.Clock.Now())})
				return
			}
			// Not followed yet (the manager is resuming it) or unreadable:
			// look again later.
			select {
			case <-s.cfg.Clock.After(s.cfg.Rescan):
			case <-s.ctx.Done():
				return
			}
		}
	}()
}

// finish records how a run ended and counts it.
func (s *Scheduler) finish(run Run, o oneoff.OneOff) {
	run.State, run.Outcome, run.ExitCode, run.FinishedAt = o.State, o.Outcome, o.ExitCode, o.FinishedAt
	if run.FinishedAt == nil {
		run.FinishedAt = ptr(s.cfg.Clock.Now())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.Wake() // a late run may wait for this end
	delete(s.settling, run.OneOffID)
	k := key{run.App, run.Job}
	delete(s.running[k], run.OneOffID)
	if len(s.running[k]) == 0 {
		delete(s.running, k)
	}
	st := s.state(key{run.App, run.Job})
	outcome := "failed"
	if run.Succeeded() {
		outcome = "succeeded"
		st.Failures = 0
	} else {
		st.Failures++
	}
	s.met.runs.WithLabelValues(outcome).Inc()
	s.gauge(run.App, run.Job, st.Failures)
	if err := s.store.FinishCronRun(s.ctx, run, *st); err != nil {
		s.log.Error("cron: record the end of a run", "app", run.App, "job", run.Job, "oneoff", run.OneOffID, "err", err)
	}
	attrs := []any{"app", run.App, "job", run.Job, "oneoff", run.OneOffID, "outcome", o.Outcome}
	if o.ExitCode != nil {
		attrs = append(attrs, "exit_code", *o.ExitCode)
	}
	s.log.Info("cron: job finished", attrs...)
}

// message is what a run's history says of err.
func message(err error) string {
	if e, ok := errdefs.As(err); ok {
		return e.Message
	}
	return err.Error()
}

func ptr[T any](v T) *T { return &v }
