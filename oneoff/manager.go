package oneoff

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// The labels that mark a container as a one-off of this daemon.
const (
	LabelManaged  = "io.oneoffd.managed"
	LabelInstance = "io.oneoffd.instance"
	LabelID       = "io.oneoffd.id"
	LabelApp      = "io.oneoffd.app"
	LabelName     = "io.oneoffd.name"
	LabelMode     = "io.oneoffd.mode"
)

// Config tunes a Manager. Zero durations take the defaults.
type Config struct {
	// Instance tells this daemon's containers from other daemons' on a
	// shared engine; it must survive restarts.
	Instance string
	// IdleTimeout closes an attached session in which no byte flowed.
	IdleTimeout time.Duration
	// AttachWait is how long an attached one-off waits for its terminal.
	AttachWait time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// DrainTimeout bounds the wait for output after the process exited.
	DrainTimeout time.Duration
	// ReconcileInterval is how often containers and records are compared.
	ReconcileInterval time.Duration
	// EngineTimeout bounds each engine call made on a one-off's behalf.
	EngineTimeout time.Duration
	// MaxLifetime is the longest a detached one-off may run; a request
	// may ask for less.
	MaxLifetime time.Duration
	// Sizes are the resource limits a request may pick from; DefaultSize
	// names the one it gets when it picks none.
	Sizes       []Size
	DefaultSize string
	// PullTimeout bounds the pull of an image that is not on the engine.
	PullTimeout time.Duration
	// Metrics is where the one-offs' metrics are registered; none are
	// exposed when nil.
	Metrics prometheus.Registerer
	// MaxUploadFile and MaxUploadTotal bound a request's uploads: each
	// file, and all together.
	MaxUploadFile  int64
	MaxUploadTotal int64
	// MaxPerApp and MaxTotal bound the one-offs not finished yet, pending
	// or running: those of one app, and all together.
	MaxPerApp int
	MaxTotal  int
	// RecordRetention is how long the records of finished one-offs and the
	// audit trail's events are kept.
	RecordRetention time.Duration
	// ReconnectGrace is how long an attached session whose resumable
	// terminal went away goes on, waiting for it to reconnect; zero stops
	// it at once, as for a terminal that cannot resume.
	ReconnectGrace time.Duration
	// ReplayBuffer bounds the output a resumable session keeps until its
	// terminal acknowledges it; DefaultReplayBuffer when zero.
	ReplayBuffer int
	// RecordDir, when set, is where attached sessions are recorded
	// (asciicast v2), each recording capped at RecordingMaxSize
	// (DefaultRecordingMaxSize when zero) and kept for RecordRetention.
	RecordDir        string
	RecordingMaxSize int64
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// The defaults.
const (
	DefaultIdleTimeout       = 30 * time.Minute
	DefaultAttachWait        = 2 * time.Minute
	DefaultStopGrace         = 10 * time.Second
	DefaultDrainTimeout      = 10 * time.Second
	DefaultReconcileInterval = time.Minute
	DefaultEngineTimeout     = 2 * time.Minute
	DefaultMaxLifetime       = 24 * time.Hour
	DefaultPullTimeout       = 10 * time.Minute
	DefaultMaxPerApp         = 10
	DefaultMaxTotal          = 100
	DefaultRecordRetention   = 90 * 24 * time.Hour
)

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.AttachWait, DefaultAttachWait)
	def(&c.StopGrace, DefaultStopGrace)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.ReconcileInterval, DefaultReconcileInterval)
	def(&c.EngineTimeout, DefaultEngineTimeout)
	def(&c.MaxLifetime, DefaultMaxLifetime)
	def(&c.PullTimeout, DefaultPullTimeout)
	def(&c.RecordRetention, DefaultRecordRetention)
	if c.MaxPerApp <= 0 {
		c.MaxPerApp = DefaultMaxPerApp
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxUploadFile <= 0 {
		c.MaxUploadFile = DefaultMaxUploadFile
	}
	if c.MaxUploadTotal <= 0 {
		c.MaxUploadTotal = DefaultMaxUploadTotal
	}
	if len(c.Sizes) == 0 {
		c.Sizes, _ = ParseSizes(DefaultSizes)
		if c.DefaultSize == "" {
			c.DefaultSize = DefaultSize
		}
	}
	if c.DefaultSize == "" {
		c.DefaultSize = c.Sizes[0].Name
	}
}

// Manager creates one-offs, hands their terminals over and makes sure each
// one ends and leaves nothing behind.
type Manager struct {
	cfg      Config
	rt       Runtime
	store    Store
	releases Releases
	logs     LogSink
	log      *slog.Logger
	met      *metrics

	mu      sync.Mutex
	live    map[string]*live
	closing bool
	wg      sync.WaitGroup // attached sessions
	bg      sync.WaitGroup // detached one-offs' followers
	// resumes holds the resumable sessions by one-off id.
	resumes sync.Map

	// ctx ends at Close: the reconcile loop and the followers of detached
	// one-offs stop with it, leaving the jobs running for the next start.
	ctx    context.Context
	cancel context.CancelFunc
	loop   chan struct{}
}

// live is the in-memory side of a one-off that has not finished. Its
// fields are guarded by mu, but for id and app.
type live struct {
	// id and app are the record's, which never change: read them without
	// the lock.
	id, app string

	mu      sync.Mutex
	rec     OneOff
	claimed bool
	// reason is why the one-off is being stopped, once someone asked;
	// stoppedBy is who asked, for a stop.
	reason    Outcome
	stoppedBy string
	stopc     chan struct{}
	timer     *time.Timer
	finished  bool
	done      chan struct{}
	// ready is closed once the container exists, or never will (prepErr
	// says why); progress is how far its image's pull has got.
	ready     chan struct{}
	readyOnce sync.Once
	prepErr   error
	progress  PullProgress
	// running says the container started in this process, so that the
	// running gauge goes down again at the end.
	running bool
	// The attached terminal's traffic, and its activity once attached.
	bytesIn, bytesOut atomic.Int64
	act               *activity
}

func newLive(rec OneOff) *live {
	return &live{id: rec.ID, app: rec.App, rec: rec, stopc: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{})}
}

// current returns the record with the terminal's traffic so far.
func (l *live) current() OneOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.rec
	rec.BytesIn, rec.BytesOut = l.bytesIn.Load(), l.bytesOut.Load()
	if l.act != nil {
		last := l.act.lastTime().UTC()
		rec.LastActivity = &last
	}
	return rec
}

// snapshot returns a copy of the record.
func (l *live) snapshot() OneOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// readyErr says why the container will never exist, once ready is closed.
func (l *live) readyErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prepErr
}

// markReady says the container exists, or with err that it never will.
func (l *live) markReady(err error) {
	l.readyOnce.Do(func() {
		l.mu.Lock()
		l.prepErr = err
		l.mu.Unlock()
		close(l.ready)
	})
}

// requestStop records why the one-off must stop, the first reason winning,
// and reports whether this call was the first.
func (l *live) requestStop(why Outcome) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requestStopLocked(why)
}

func (l *live) requestStopLocked(why Outcome) bool {
	if l.reason != "" {
		return false
	}
	l.reason = why
	close(l.stopc)
	return true
}

// stopUnclaimed requests a stop unless a terminal claimed the one-off
// first; once it returns true, no terminal can claim it any more, so the
// caller alone discards it.
func (l *live) stopUnclaimed(why Outcome) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.claimed {
		return false
	}
	return l.requestStopLocked(why)
}

func (l *live) stopTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
}

// NewManager returns a Manager; call Start before use. Detached one-offs'
// output goes to logs.
func NewManager(cfg Config, rt Runtime, store Store, releases Releases, logs LogSink, log *slog.Logger) *Manager {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, rt: rt, store: store, releases: releases, logs: logs, log: log,
		met: newMetrics(cfg.Metrics, cfg.Sizes), live: map[string]*live{}, ctx: ctx, cancel: cancel}
}

// Config returns the effective configuration.
func (m *Manager) Config() Config { return m.cfg }

// Start reconciles the engine with the records, adopting the detached
// one-offs still running, then keeps reconciling in the background until
// Close. An engine that does not answer yet is not an error: the next
// round retries.
func (m *Manager) Start(ctx context.Context) error {
	m.loop = make(chan struct{})
	if err := m.Reconcile(ctx); err != nil {
		m.log.Warn("reconcile failed; will retry", "err", err)
	}
	go func() {
		defer close(m.loop)
		m.prune(m.ctx) // in the background: a backlog must not delay the start
		t := time.NewTicker(m.cfg.ReconcileInterval)
		defer t.Stop()
		pt := time.NewTicker(pruneInterval)
		defer pt.Stop()
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-t.C:
				if err := m.Reconcile(m.ctx); err != nil {
					m.log.Warn("reconcile failed; will retry", "err", err)
				}
			case <-pt.C:
				m.prune(m.ctx)
			}
		}
	}()
	return nil
}

// Close refuses new one-offs, waits until ctx is done for attached sessions
// to end, then stops those still running. Pending one-offs are kept: their
// containers and secrets survive a restart.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.cancel()
	if m.loop != nil {
		<-m.loop
	}
	m.bg.Wait()
	sessions := make(chan struct{})
	go func() { m.wg.Wait(); close(sessions) }()
	select {
	case <-sessions:
	case <-ctx.Done():
		m.mu.Lock()
		for _, l := range m.live {
			l.mu.Lock()
			claimed := l.claimed
			l.mu.Unlock()
			if claimed {
				l.requestStop(Stopped)
			}
		}
		m.mu.Unlock()
		<-sessions
	}
	m.mu.Lock()
	for _, l := range m.live {
		l.stopTimer()
	}
	m.mu.Unlock()
	return nil
}

// Create registers a one-off for app and creates its container, not started.
// It returns the record and the secret that attaches a terminal to it.
func (m *Manager) Create(ctx context.Context, app string, req Request) (OneOff, string, error) {
	rel, err := m.releases.Current(ctx, app)
	if err != nil {
		return OneOff{}, "", err
	}
	if err := deploy.ValidateEnv(req.Env); err != nil {
		return OneOff{}, "", err
	}
	argv, err := req.argv(rel)
	if err != nil {
		return OneOff{}, "", err
	}
	ttl, err := m.lifetime(req)
	if err != nil {
		return OneOff{}, "", err
	}
	size, err := m.size(req.Size)
	if err != nil {
		return OneOff{}, "", err
	}
	uploads, err := m.checkUploads(req.Uploads)
	if err != nil {
		return OneOff{}, "", err
	}
	now := m.cfg.Now().UTC()
	rec := OneOff{
		ID: newID(), App: app, Release: rel.Version, Image: rel.Image, Command: argv,
		EnvNames: req.envNames(), Mode: Attached, TTY: req.TTY, Requester: req.Requester,
		Size: size.Name, State: Pending, Step: StepCreate, CreatedAt: now,
		Name: req.NamePrefix, // insert draws the name, after this prefix
	}
	if len(uploads) > 0 {
		rec.Step = StepUpload // a container without all its files is of no use
	}
	var secret string
	if req.Detached {
		rec.Mode = Detached
	} else {
		secret = randomString(32)
		hash := sha256.Sum256([]byte(secret))
		deadline := now.Add(m.cfg.AttachWait)
		rec.AttachDeadline, rec.SecretHash = &deadline, hash[:]
	}
	// Followed before it is written, so that a concurrent reconcile never
	// takes the new record for an orphan.
	l := newLive(rec)
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return OneOff{}, "", errdefs.Unavailable("shutting_down", nil, "oneoffd is shutting down: retry in a moment")
	}
	// Counted under the lock that registers the new one-off, in-flight
	// creates included, so that two creates cannot both take the last slot.
	if err := m.checkQuotaLocked(app); err != nil {
		m.mu.Unlock()
		return OneOff{}, "", err
	}
	m.live[rec.ID] = l
	m.mu.Unlock()
	if err := m.insert(ctx, &rec); err != nil {
		m.mu.Lock()
		delete(m.live, rec.ID)
		m.mu.Unlock()
		return OneOff{}, "", err
	}
	l.mu.Lock()
	l.rec = rec
	l.mu.Unlock()
	m.audit(rec, AuditCreate, req.Requester, createDetail(rec, len(uploads)))

	p := plan{
		spec: Spec{
			Name: app + "." + rec.Name + "." + rec.ID, Image: rel.Image, Cmd: argv, Env: req.env(rel),
			TTY: req.TTY, Stdin: !req.Detached, Window: req.Window, Logs: req.Detached, Limits: size, App: app,
			Labels: map[string]string{
				LabelManaged: "true", LabelInstance: m.cfg.Instance, LabelID: rec.ID,
				LabelApp: app, LabelName: rec.Name, LabelMode: string(rec.Mode),
			},
		},
		release: rel.Version, uploads: uploads, data: req.UploadData, ttl: ttl,
	}
	log := m.log.With("oneoff", rec.ID, "app", app, "name", rec.Name)
	ectx, cancel := m.engineContext(ctx)
	defer cancel()
	present, err := m.rt.HasImage(ectx, rel.Image)
	if err != nil {
		m.finish(l, Failed, nil, userMessage(err))
		return OneOff{}, "", fmt.Errorf("create one-off for %q: %w", app, err)
	}
	if !present && len(uploads) > 0 {
		// The files are in this request's body, which cannot wait: the
		// image is pulled now, while the client waits.
		log.Info("pulling the image before the upload", "image", rel.Image)
		pctx, pcancel := context.WithTimeout(ctx, m.cfg.PullTimeout)
		err := m.rt.Pull(pctx, rel.Image, nil)
		pcancel()
		if err != nil {
			m.finish(l, Failed, nil, userMessage(err))
			return OneOff{}, "", fmt.Errorf("create one-off for %q: %w", app, err)
		}
		present = true
	}
	if !present {
		// Answer now: an attached user sees the pull's progress once
		// attached, a detached one-off's log records it.
		if !req.Detached {
			m.armAttachWait(l, m.cfg.AttachWait)
		}
		m.bg.Add(1)
		go m.pullAndPrepare(l, p)
		log.Info("one-off created; its image is being pulled", "image", rel.Image)
		return rec, secret, nil
	}
	if rec, err = m.prepare(ctx, l, p); err != nil {
		return OneOff{}, "", err
	}
	if !req.Detached {
		m.armAttachWait(l, m.cfg.AttachWait)
	}
	l.markReady(nil)
	return rec, secret, nil
}

// plan is what a one-off's container is made of once its image is there.
type plan struct {
	spec    Spec
	release int
	uploads []Uploaded
	data    UploadReader
	ttl     time.Duration
}

// prepare creates the one-off's container, puts the uploads in, and starts
// it when it is detached. On error the one-off is finished.
func (m *Manager) prepare(ctx context.Context, l *live, p plan) (OneOff, error) {
	rec := l.snapshot()
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	ectx, cancel := m.engineContext(ctx)
	defer cancel()
	cid, err := m.rt.Create(ectx, p.spec)
	if err != nil {
		log.Warn("create container failed", "err", err)
		m.finish(l, Failed, nil, userMessage(err))
		return OneOff{}, fmt.Errorf("create one-off for %q: %w", rec.App, err)
	}
	// The next step's intent goes with the container's id, in one write.
	l.mu.Lock()
	l.rec.ContainerID, l.rec.Step = cid, StepNone
	if len(p.uploads) > 0 {
		l.rec.Step = StepUpload
	}
	rec = l.rec
	stopped := l.reason
	l.mu.Unlock()
	if stopped != "" {
		// Stopped while the engine was creating the container: the stop
		// found nothing to remove, so the container is removed here.
		if err := m.rt.Remove(ectx, cid); err != nil {
			log.Error("remove container failed; reconcile will retry", "container", shortID(cid), "err", err)
		}
		return OneOff{}, errdefs.Conflict("oneoff_stopped", "one-off %s was stopped (%s) while its container was being created", rec.Name, stopped)
	}
	if err := m.store.UpdateOneOff(ectx, rec); err != nil {
		m.discard(l, Failed, userMessage(err))
		return OneOff{}, fmt.Errorf("record one-off %q: %w", rec.ID, err)
	}
	if len(p.uploads) > 0 {
		// Bound by the client's request rather than a timeout: a large
		// file from a slow client takes its time.
		if err := m.copyUploads(ctx, cid, p.uploads, p.data); err != nil {
			log.Warn("upload failed", "err", err)
			m.discard(l, Failed, userMessage(err))
			return OneOff{}, fmt.Errorf("upload files for one-off %s: %w", rec.Name, err)
		}
		l.mu.Lock()
		l.rec.Uploads, l.rec.Step = p.uploads, StepNone
		rec = l.rec
		l.mu.Unlock()
		if err := m.store.UpdateOneOff(ectx, rec); err != nil {
			m.discard(l, Failed, userMessage(err))
			return OneOff{}, fmt.Errorf("record one-off %q: %w", rec.ID, err)
		}
		var bytes int64
		for _, u := range p.uploads {
			bytes += u.Size
		}
		m.met.uploadBytes.Add(float64(bytes))
		log.Info("files uploaded", "files", len(p.uploads), "bytes", bytes)
	}
	if rec.Mode == Detached {
		rec, err := m.startDetached(ectx, l, p.ttl)
		if err != nil {
			return OneOff{}, fmt.Errorf("start one-off %s: %w", rec.Name, err)
		}
		log.Info("detached one-off started", "image", p.spec.Image, "release", p.release,
			"container", shortID(cid), "expires_at", rec.ExpiresAt)
		return rec, nil
	}
	log.Info("one-off created", "image", p.spec.Image, "release", p.release, "container", shortID(cid), "tty", p.spec.TTY)
	return rec, nil
}

// lifetime returns how long a detached one-off may run: what the request
// asks, no more than the configured maximum.
func (m *Manager) lifetime(req Request) (time.Duration, error) {
	switch {
	case !req.Detached && req.TTL != 0:
		return 0, errdefs.Invalid("ttl_detached_only", "a lifetime (ttl) applies to detached one-offs only: an attached one is reaped when idle")
	case !req.Detached:
		return 0, nil
	case req.TTL < 0:
		return 0, errdefs.Invalid("invalid_ttl", "ttl %s is negative: ask for a positive lifetime", req.TTL)
	case req.TTL > m.cfg.MaxLifetime:
		return 0, errdefs.Invalid("ttl_too_long", "ttl %s is over the maximum lifetime of %s: ask for %s or less", req.TTL, m.cfg.MaxLifetime, m.cfg.MaxLifetime)
	case req.TTL == 0:
		return m.cfg.MaxLifetime, nil
	}
	return req.TTL, nil
}

// Done returns a channel closed once one-off id has finished: output
// drained, container removed, record written.
func (m *Manager) Done(id string) <-chan struct{} {
	if l := m.lookup(id); l != nil {
		return l.done
	}
	done := make(chan struct{})
	close(done)
	return done
}

// insert stores rec under a fresh name, drawing again on a clash; the name
// starts with rec.Name when set, with "one-off" otherwise.
func (m *Manager) insert(ctx context.Context, rec *OneOff) error {
	prefix := rec.Name
	if prefix == "" {
		prefix = "one-off"
	}
	for attempt := 0; ; attempt++ {
		digits := 4 + attempt/4 // widen when the app's names get crowded
		rec.Name = fmt.Sprintf("%s-%d", prefix, randomNumber(digits))
		err := m.store.CreateOneOff(ctx, *rec)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errdefs.ErrConflict) || attempt >= 16 {
			return fmt.Errorf("record one-off: %w", err)
		}
	}
}

// armAttachWait discards l if no terminal claims it within d.
func (m *Manager) armAttachWait(l *live, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reason != "" {
		return
	}
	l.timer = time.AfterFunc(d, func() {
		if l.stopUnclaimed(AttachTimeout) {
			m.log.Info("nobody attached in time; discarding", "oneoff", l.id, "app", l.app, "wait", m.cfg.AttachWait)
			m.met.attachExpiries.Inc()
			m.audit(l.snapshot(), AuditReap, ActorDaemon, fmt.Sprintf("nobody attached within %s", m.cfg.AttachWait))
			m.discard(l, AttachTimeout, "")
		}
	})
}

// Get returns a one-off's record.
func (m *Manager) Get(ctx context.Context, id string) (OneOff, error) {
	if l := m.lookup(id); l != nil {
		return l.current(), nil
	}
	return m.store.OneOff(ctx, id)
}

// List returns the records that pass f, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]OneOff, error) {
	return m.store.OneOffs(ctx, f)
}

// Stop ends a one-off: a pending one is discarded, a running one gets
// SIGTERM, then SIGKILL after the grace period. It returns once the one-off
// has finished, or when ctx is done. Stopping a stopping one-off is fine;
// stopping a finished one is a conflict.
func (m *Manager) Stop(ctx context.Context, id, actor string) (OneOff, error) {
	l := m.lookup(id)
	if l == nil {
		rec, err := m.store.OneOff(ctx, id)
		if err != nil {
			return OneOff{}, err
		}
		if rec.Outcome == Stopped {
			return rec, nil // stopped already: asking again changes nothing
		}
		return rec, errdefs.Conflict("oneoff_finished", "one-off %s already finished (%s)", rec.Name, describe(rec))
	}
	l.mu.Lock()
	if l.reason == "" {
		l.stoppedBy = actor
		if actor == "" {
			l.stoppedBy = "a client of the API"
		}
	}
	l.mu.Unlock()
	switch {
	case l.stopUnclaimed(Stopped):
		m.log.Info("stop requested; discarding the unstarted container", "oneoff", id, "app", l.app, "actor", actor)
		m.audit(l.snapshot(), AuditStop, actor, "before it started")
		m.discard(l, Stopped, "")
	case l.requestStop(Stopped):
		m.log.Info("stop requested", "oneoff", id, "app", l.app, "actor", actor)
		m.audit(l.snapshot(), AuditStop, actor, fmt.Sprintf("SIGTERM, then SIGKILL after %s", m.cfg.StopGrace))
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return m.Get(context.WithoutCancel(ctx), id)
	}
	return m.store.OneOff(context.WithoutCancel(ctx), id)
}

// Claim checks an attach secret and hands the one-off's terminal to the
// caller, once: a second claim with the same secret is refused.
func (m *Manager) Claim(ctx context.Context, id, secret, client string) (*Session, error) {
	hash := sha256.Sum256([]byte(secret))
	l := m.lookup(id)
	if l == nil {
		rec, err := m.store.OneOff(ctx, id)
		if err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return nil, errdefs.NotFound("oneoff_not_found", "one-off %q does not exist", id)
			}
			return nil, err
		}
		if subtle.ConstantTimeCompare(hash[:], rec.SecretHash) != 1 {
			return nil, wrongSecret(rec)
		}
		return nil, errdefs.Conflict("secret_used", "one-off %s already ran (%s): its secret is spent; start a new one-off", rec.Name, describe(rec))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if subtle.ConstantTimeCompare(hash[:], l.rec.SecretHash) != 1 {
		return nil, wrongSecret(l.rec)
	}
	if l.claimed || l.reason != "" {
		return nil, errdefs.Conflict("secret_used", "one-off %s already has a terminal or is ending: its secret is spent; start a new one-off", l.rec.Name)
	}
	l.claimed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.rec.Client = client
	rec := l.rec
	m.wg.Add(1)
	go m.audit(rec, AuditAttach, rec.Requester, "terminal from "+client)
	return &Session{m: m, l: l}, nil
}

func wrongSecret(rec OneOff) error {
	return errdefs.Unauthorized("wrong_secret", "the attach secret is not one-off %s's: use the secret returned when it was created", rec.Name)
}

func (m *Manager) lookup(id string) *live {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

// discard removes a one-off's container that never started, and records
// how it ended.
func (m *Manager) discard(l *live, outcome Outcome, msg string) {
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	l.stopTimer()
	l.mu.Lock()
	cid := l.rec.ContainerID
	l.mu.Unlock()
	if cid != "" {
		m.recordEnd(l, outcome, nil, msg)
		if err := m.rt.Remove(ctx, cid); err != nil {
			m.log.Error("remove container failed; reconcile will retry", "oneoff", l.id, "container", shortID(cid), "err", err)
		}
	}
	m.finish(l, outcome, nil, msg)
}

// finish records the end of a one-off and forgets it. Only the first call
// counts: a later one, from a path that lost a race, changes nothing.
func (m *Manager) finish(l *live, outcome Outcome, code *int, msg string) {
	now := m.cfg.Now().UTC()
	l.mu.Lock()
	if l.finished {
		l.mu.Unlock()
		return
	}
	l.finished = true
	l.rec.State, l.rec.Step, l.rec.Outcome, l.rec.ExitCode, l.rec.Error = Finished, StepNone, outcome, code, msg
	l.rec.FinishedAt = &now
	l.rec.AttachDeadline = nil
	l.mu.Unlock()
	rec := l.current()
	l.mu.Lock()
	l.rec = rec
	running := l.running
	l.mu.Unlock()
	m.met.finished.WithLabelValues(string(rec.Mode), string(outcome)).Inc()
	if running {
		m.met.running.WithLabelValues(string(rec.Mode)).Dec()
	}
	if rec.StartedAt != nil {
		m.met.runDuration.WithLabelValues(string(rec.Mode)).Observe(now.Sub(*rec.StartedAt).Seconds())
	}
	m.audit(rec, AuditExit, ActorDaemon, describe(rec))
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Error("record finished one-off failed", "oneoff", rec.ID, "err", err)
	}
	m.mu.Lock()
	delete(m.live, rec.ID)
	m.mu.Unlock()
	why := msg
	if why == "" {
		why = string(outcome)
	}
	l.markReady(errors.New(why))
	close(l.done)
	attrs := []any{"oneoff", rec.ID, "app", rec.App, "name", rec.Name, "outcome", outcome}
	if code != nil {
		attrs = append(attrs, "exit_code", *code)
	}
	if msg != "" {
		attrs = append(attrs, "error", msg)
	}
	m.log.Info("one-off finished", attrs...)
}

// recordEnd writes how a one-off ended before its container is removed, so
// that a daemon dying before the record says finished leaves the next start
// the outcome to record, rather than a guess.
func (m *Manager) recordEnd(l *live, outcome Outcome, code *int, msg string) {
	l.mu.Lock()
	if l.finished {
		l.mu.Unlock()
		return
	}
	l.rec.Step, l.rec.Outcome, l.rec.ExitCode, l.rec.Error = StepRemove, outcome, code, msg
	rec := l.rec
	l.mu.Unlock()
	ctx, cancel := m.engineContext(context.Background())
	defer cancel()
	if err := m.store.UpdateOneOff(ctx, rec); err != nil {
		m.log.Warn("record the end before removing the container failed", "oneoff", rec.ID, "err", err)
	}
}

func (m *Manager) engineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.cfg.EngineTimeout)
}
