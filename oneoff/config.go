package oneoff

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
