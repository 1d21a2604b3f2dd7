package cron

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// DefaultRescan is how often the scheduler reads the apps' releases again,
// to pick up the jobs a new release brings.
const DefaultRescan = 5 * time.Second

// Config tunes a Scheduler. Zero values take the defaults.
type Config struct {
	// Rules check the definitions a release brings.
	Rules Rules
	// Rescan is how often the releases are read again; DefaultRescan when zero.
	Rescan time.Duration
	// Requester is who the one-offs say asked for them; "cron" when empty.
	Requester string
	// Clock tells the time; the real one when nil.
	Clock clockwork.Clock
	// Metrics is where the scheduler's metrics are registered; none are
	// exposed when nil.
	Metrics prometheus.Registerer
}

// Scheduler starts the apps' cron jobs when they come due.
type Scheduler struct {
	cfg      Config
	starter  Starter
	releases Releases
	store    Store
	log      *slog.Logger
	met      *metrics

	// mu serializes the runs and guards what follows.
	mu     sync.Mutex
	states map[key]*State
	parsed map[string]parsedRelease // by app
	gauged map[key]bool
	// running holds each job's runs under way, one-off ID to name;
	// settling those that were under way when the daemon stopped, until
	// their end is known again.
	running  map[key]map[string]string
	settling map[string]bool

	ctx    context.Context
	cancel context.CancelFunc
	loop   chan struct{}
	wake   chan struct{}
	wg     sync.WaitGroup // the watchers of started runs
}

type key struct{ app, job string }

// parsedRelease caches the parsed jobs of an app's current release.
type parsedRelease struct {
	version int
	since   time.Time // when the release was registered
	jobs    []Job
	err     error
}

// New returns a Scheduler that starts jobs through starter, reads them
// from releases and keeps its state in store.
func New(cfg Config, starter Starter, releases Releases, store Store, log *slog.Logger) *Scheduler {
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.Requester == "" {
		cfg.Requester = "cron"
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	return &Scheduler{cfg: cfg, starter: starter, releases: releases, store: store, log: log,
		met: newMetrics(cfg.Metrics), wake: make(chan struct{}, 1), states: map[key]*State{}, parsed: map[string]parsedRelease{}, gauged: map[key]bool{}, running: map[key]map[string]string{}, settling: map[string]bool{}}
}

// Start loads the scheduler's state, follows the runs still going and
// starts the loop. Call it after the Starter has started.
func (s *Scheduler) Start(ctx context.Context) error {
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.load(ctx); err != nil {
		s.cancel()
		return fmt.Errorf("start cron scheduler: %w", err)
	}
	s.loop = make(chan struct{})
	go s.run()
	return nil
}

// load reads the jobs' states and follows the runs whose end is not
// recorded.
func (s *Scheduler) load(ctx context.Context) error {
	states, err := s.store.CronStates(ctx)
	if err != nil {
		return err
	}
	runs, err := s.store.UnfinishedCronRuns(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		s.states[key{st.App, st.Job}] = &st
	}
	for _, r := range runs {
		s.settling[r.OneOffID] = true
		s.follow(r)
	}
	return nil
}

// Close stops the loop and the watchers; the runs under way go on and are
// followed again at the next Start.
func (s *Scheduler) Close(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() { <-s.loop; s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close cron scheduler: %w", ctx.Err())
	}
}

// run is the loop: due jobs are run, then it sleeps until the next due
// time or the next rescan.
func (s *Scheduler) run() {
	defer close(s.loop)
	for {
		wait := s.tick(s.ctx)
		t := s.cfg.Clock.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.Chan():
		case <-s.wake:
			t.Stop()
		}
	}
}

// Wake has the scheduler read the releases again now, as when one was
// registered; it does not wait.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// tick runs the jobs that are due and returns how long to sleep.
func (s *Scheduler) tick(ctx context.Context) time.Duration {
	now := s.cfg.Clock.Now()
	next := now.Add(s.cfg.Rescan)
	apps, err := s.releases.Apps(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("cron: read the apps' releases", "err", err)
		}
		return s.cfg.Rescan
	}
	type dueJob struct {
		app   string
		job   Job
		since time.Time
	}
	var due []dueJob
	s.mu.Lock()
	defined := map[key]bool{}
	for _, a := range apps {
		pr := s.jobsOf(a.Name, a.Release)
		for _, j := range pr.jobs {
			k := key{a.Name, j.Name}
			defined[k] = true
			if t := j.Next(anchor(s.state(k), pr.since)); t.After(now) {
				next = earlier(next, t)
			} else {
				due = append(due, dueJob{a.Name, j, pr.since})
			}
		}
	}
	for k := range s.gauged {
		if !defined[k] {
			s.met.failures.DeleteLabelValues(k.app, k.job)
			delete(s.gauged, k)
		}
	}
	s.mu.Unlock()

	// The due jobs start side by side, a few at a time.
	fired := make([]bool, len(due))
	var wg sync.WaitGroup
	sem := make(chan struct{}, startConcurrency)
	for i, d := range due {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fired[i] = s.fire(ctx, d.app, d.job, d.since, now)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for i, d := range due {
		if fired[i] { // one that waits is looked at again when woken
			next = earlier(next, d.job.Next(anchor(s.state(key{d.app, d.job.Name}), d.since)))
		}
	}
	s.mu.Unlock()
	return max(next.Sub(s.cfg.Clock.Now()), 0)
}

// startConcurrency bounds the one-offs a tick starts at once.
const startConcurrency = 8

// earlier returns the earlier of a and b, ignoring a zero b.
func earlier(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// anchor is the time after which a job's next due time is looked for: its
// last handled tick, but never before the release that defines it, so that
// neither a new job nor a changed schedule catches up on the past.
func anchor(st *State, since time.Time) time.Time {
	if st.LastTick.After(since) {
		return st.LastTick
	}
	return since
}

// jobsOf returns the parsed jobs of an app's release, from the cache.
// Called with mu held.
func (s *Scheduler) jobsOf(app string, rel *deploy.Release) parsedRelease {
	if rel == nil || len(rel.Cron) == 0 {
		delete(s.parsed, app)
		return parsedRelease{}
	}
	if pr, ok := s.parsed[app]; ok && pr.version == rel.Version {
		return pr
	}
	// Stored definitions were checked at deploy time; they are read back
	// leniently so that a stricter daemon configuration does not drop them.
	jobs, err := Rules{MinInterval: time.Second}.Parse(rel.Cron)
	if err != nil {
		s.log.Error("cron: an app's stored cron jobs do not parse; they do not run", "app", app, "release", rel.Version, "err", err)
	}
	pr := parsedRelease{version: rel.Version, since: rel.CreatedAt, jobs: jobs, err: err}
	s.parsed[app] = pr
	return pr
}

// state returns a job's state, creating it. Called with mu held.
func (s *Scheduler) state(k key) *State {
	st, ok := s.states[k]
	if !ok {
		st = &State{App: k.app, Job: k.job}
		s.states[k] = st
	}
	return st
}

// fire handles a job that came due: the latest due time still within the
// job's deadline runs once, however many passed; if none is within it,
// one miss is recorded. It reports false when it waits instead: a late run
// that forbids overlap waits, within its deadline, to know whether the
// run under way when the daemon stopped has ended since.
func (s *Scheduler) fire(ctx context.Context, app string, j Job, since, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(key{app, j.Name})
	first := j.Next(anchor(st, since))
	lower := anchor(st, since)
	if w := now.Add(-j.Deadline() - time.Second); w.After(lower) {
		lower = w
	}
	var latest time.Time
	for t := j.Next(lower); !t.IsZero() && !t.After(now); t = j.Next(t) {
		if now.Sub(t) <= j.Deadline() {
			latest = t
		}
	}
	if latest.IsZero() {
		s.met.misses.Inc()
		st.LastTick = now
		run := Run{App: app, Job: j.Name, Trigger: Scheduled, Status: Missed, ScheduledAt: first, At: now,
			Reason: fmt.Sprintf("the daemon was down from before %s; it came back after the job's %s starting deadline", first.UTC().Format(time.RFC3339), j.Deadline())}
		s.log.Warn("cron: a job's due time passed while the daemon was down, too long ago to start it", "app", app, "job", j.Name, "due", first, "deadline", j.Deadline())
		s.record(ctx, run, st)
		return true
	}
	trigger := Scheduled
	if !latest.Equal(first) {
		// Due times were given up: the latest alone runs.
		s.met.misses.Inc()
		s.log.Info("cron: due times passed without a run (the daemon was down or late); running the latest once", "app", app, "job", j.Name, "first", first, "latest", latest)
	}
	if !latest.Equal(first) || now.Sub(latest) > s.cfg.Rescan {
		trigger = CatchUp
	}
	if trigger == CatchUp && j.overlap() == Forbid {
		for id := range s.running[key{app, j.Name}] {
			if s.settling[id] {
				s.log.Debug("cron: a late run waits to know whether the previous one still runs", "app", app, "job", j.Name, "previous", id)
				return false
			}
		}
	}
	st.LastTick = latest
	_, _ = s.start(ctx, app, j, trigger, latest, now, s.cfg.Requester) // recorded, and logged
	return true
}

// start applies the job's overlap policy and starts a one-off for it, asked
// for by requester. Called with mu held, which it lets go while the engine
// is called.
func (s *Scheduler) start(ctx context.Context, app string, j Job, trigger Trigger, due, now time.Time, requester string) (Run, error) {
	st := s.state(key{app, j.Name})
	run := Run{App: app, Job: j.Name, Trigger: trigger, ScheduledAt: due, At: now}
	if prev := s.running[key{app, j.Name}]; trigger != Manual && j.overlap() != Allow && len(prev) > 0 {
		ids := slices.Sorted(maps.Keys(prev))
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = prev[id]
		}
		if j.overlap() == Forbid {
			s.met.skips.Inc()
			run.Status = Skipped
			run.Reason = fmt.Sprintf("the previous run %s still runs (overlap: forbid)", strings.Join(names, ", "))
			s.log.Info("cron: skipping a run, the previous one still runs", "app", app, "job", j.Name, "previous", names)
			return s.record(ctx, run, st), nil
		}
		// Replace: asked to stop, not waited for.
		s.log.Info("cron: replacing the previous run", "app", app, "job", j.Name, "previous", names)
		s.mu.Unlock()
		for i, id := range ids {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := s.starter.Stop(sctx, id, s.cfg.Requester)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errdefs.ErrConflict) {
				s.log.Warn("cron: stop the previous run to replace it", "app", app, "job", j.Name, "previous", names[i], "err", err)
			}
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	o, _, err := s.starter.Create(ctx, app, j.request(requester))
	s.mu.Lock()
	if err != nil {
		s.met.runs.WithLabelValues("start_failed").Inc()
		st.Failures++
		s.gauge(app, j.Name, st.Failures)
		run.Status, run.Reason = StartFailed, message(err)
		s.log.Error("cron: start a job's one-off", "app", app, "job", j.Name, "err", err)
		return s.record(ctx, run, st), err
	}
	if trigger != Manual {
		s.met.delay.Observe(s.cfg.Clock.Now().Sub(due).Seconds())
	}
	st.LastOneOff = o.ID
	run.Status, run.OneOffID, run.OneOffName, run.State = Started, o.ID, o.Name, o.State
	s.log.Info("cron: job started", "app", app, "job", j.Name, "oneoff", o.ID, "name", o.Name, "trigger", trigger, "due", due)
	run = s.record(ctx, run, st)
	s.follow(run)
	return run, nil
}

// follow counts a started run as under way and watches it to its end.
// Called with mu held.
func (s *Scheduler) follow(run Run) {
	k := key{run.App, run.Job}
	if s.running[k] == nil {
		s.running[k] = map[string]string{}
	}
	s.running[k][run.OneOffID] = run.OneOffName
	s.watch(run)
}

// record writes a run with the job's state; a failure is logged, the
// state kept in memory. Called with mu held.
func (s *Scheduler) record(ctx context.Context, run Run, st *State) Run {
	saved, err := s.store.AddCronRun(ctx, run, *st)
	if err != nil {
		s.log.Error("cron: record a run", "app", run.App, "job", run.Job, "status", run.Status, "err", err)
		return run
	}
	return saved
}

// gauge sets a job's consecutive failures. Called with mu held.
func (s *Scheduler) gauge(app, job string, n int) {
	s.met.failures.WithLabelValues(app, job).Set(float64(n))
	s.gauged[key{app, job}] = true
}
