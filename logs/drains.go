package logs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"

	"github.com/oneoffd/oneoffd/errdefs"
)

// Drains routes lines to syslog drains: daemon-wide drains get every app's
// lines, an app's drains only that app's.
type Drains struct {
	log   *slog.Logger
	tls   *tls.Config
	allow DrainAllow

	mu     sync.RWMutex
	global map[string]*routedDrain            // by URL
	apps   map[string]map[string]*routedDrain // by app, then URL
	runCtx context.Context                    // while Run runs
	ended  bool                               // Run has returned or is returning
	wg     sync.WaitGroup                     // the drains' Run
	// stopping are removed drains still flushing; retired adds up the
	// counts of those done, so that the totals never go down.
	stopping map[*routedDrain]bool
	retired  DrainStats
}

// routedDrain is a drain and how to stop it.
type routedDrain struct {
	drain  *SyslogDrain
	cancel context.CancelFunc // nil until started
}

// NewDrains returns a router with no drains. tlsConfig is the client
// configuration for syslog+tls drains (nil for the system roots); allow
// lists the internal networks drains may reach nonetheless (see
// DrainConfig.Allow).
func NewDrains(log *slog.Logger, tlsConfig *tls.Config, allow DrainAllow) *Drains {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Drains{
		log:      log,
		tls:      tlsConfig,
		allow:    allow,
		global:   make(map[string]*routedDrain),
		apps:     make(map[string]map[string]*routedDrain),
		stopping: make(map[*routedDrain]bool),
	}
}

// newDrain makes the drain for url, not started.
func (ds *Drains) newDrain(url string, log *slog.Logger) (*routedDrain, error) {
	d, err := NewSyslogDrain(DrainConfig{URL: url, TLS: ds.tls, Logger: log, Allow: ds.allow})
	if err != nil {
		return nil, err
	}
	return &routedDrain{drain: d}, nil
}

// Validate reports, as ValidateDrainURL does, whether url names a drain
// these drains may forward to, given the networks they are allowed.
func (ds *Drains) Validate(url string) error {
	return ValidateDrainURL(url, ds.allow)
}

// AddGlobal adds a drain that gets every app's lines. Adding a URL twice
// adds one drain.
func (ds *Drains) AddGlobal(url string) error {
	rd, err := ds.newDrain(url, ds.log)
	if err != nil {
		return err
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if _, ok := ds.global[url]; ok {
		return nil
	}
	ds.global[url] = rd
	ds.startLocked(rd)
	return nil
}

// SetApp replaces app's drains with urls: drains for new URLs start, those
// for URLs no longer listed stop (after a last short attempt to send what
// they hold), and the others carry on. No URLs removes them all. If any URL
// is invalid nothing changes.
func (ds *Drains) SetApp(app string, urls []string) error {
	if app == "" {
		return errdefs.Invalid("invalid_app_name", "drains need an app name")
	}
	log := ds.log.With("app", app)
	wanted := make(map[string]*routedDrain, len(urls))
	for _, u := range urls {
		if _, ok := wanted[u]; ok {
			continue
		}
		rd, err := ds.newDrain(u, log)
		if err != nil {
			return err
		}
		wanted[u] = rd
	}

	ds.mu.Lock()
	defer ds.mu.Unlock()
	old := ds.apps[app]
	for u, rd := range old {
		if _, ok := wanted[u]; !ok {
			ds.stopLocked(rd)
		}
	}
	if len(wanted) == 0 {
		delete(ds.apps, app)
		return nil
	}
	for u, rd := range wanted {
		if kept, ok := old[u]; ok {
			wanted[u] = kept
			continue
		}
		ds.startLocked(rd)
	}
	ds.apps[app] = wanted
	return nil
}

// Enqueue hands lines to the drains they are for, without blocking.
func (ds *Drains) Enqueue(lines []Line) {
	if len(lines) == 0 {
		return
	}
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	for _, rd := range ds.global {
		rd.drain.Enqueue(lines)
	}
	if len(ds.apps) == 0 {
		return
	}
	// Lines come mostly in runs of one app: hand each run on as it is.
	for start := 0; start < len(lines); {
		app := lines[start].App
		end := start + 1
		for end < len(lines) && lines[end].App == app {
			end++
		}
		for _, rd := range ds.apps[app] {
			rd.drain.Enqueue(lines[start:end])
		}
		start = end
	}
}

// Run runs the drains, those added while it runs too, until ctx is done,
// then waits for them to stop. Call it once.
func (ds *Drains) Run(ctx context.Context) {
	ds.mu.Lock()
	if ds.runCtx != nil || ds.ended {
		ds.mu.Unlock()
		ds.log.Error("drains: Run called twice")
		return
	}
	ds.runCtx = ctx
	for _, rd := range ds.global {
		ds.startLocked(rd)
	}
	for _, drains := range ds.apps {
		for _, rd := range drains {
			ds.startLocked(rd)
		}
	}
	ds.mu.Unlock()

	<-ctx.Done()
	ds.mu.Lock()
	ds.ended = true
	ds.mu.Unlock()
	ds.wg.Wait()
}

// startLocked starts rd if Run runs.
func (ds *Drains) startLocked(rd *routedDrain) {
	if ds.runCtx == nil || ds.ended || rd.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ds.runCtx)
	rd.cancel = cancel
	ds.wg.Add(1)
	go func() {
		defer ds.wg.Done()
		rd.drain.Run(ctx)
		ds.mu.Lock()
		if ds.stopping[rd] {
			delete(ds.stopping, rd)
			st := rd.drain.Stats()
			ds.retired.Sent += st.Sent
			ds.retired.Dropped += st.Dropped
			ds.retired.Errors += st.Errors
		}
		ds.mu.Unlock()
	}()
}

// stopLocked stops rd if it runs; its counts still count.
func (ds *Drains) stopLocked(rd *routedDrain) {
	if rd.cancel != nil {
		ds.stopping[rd] = true
		rd.cancel()
	}
}

// Stats returns each drain's counts, keyed "global:<url>" for daemon-wide
// drains and "app:<app>:<url>" for an app's.
func (ds *Drains) Stats() map[string]DrainStats {
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	stats := make(map[string]DrainStats)
	for _, rd := range ds.global {
		stats["global:"+rd.drain.URL()] = rd.drain.Stats()
	}
	for app, drains := range ds.apps {
		for _, rd := range drains {
			stats["app:"+app+":"+rd.drain.URL()] = rd.drain.Stats()
		}
	}
	return stats
}
