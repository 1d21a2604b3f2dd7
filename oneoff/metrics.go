package oneoff

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the one-offs' Prometheus metrics.
type metrics struct {
	started        *prometheus.CounterVec
	finished       *prometheus.CounterVec
	running        *prometheus.GaugeVec
	nodeRunning    *prometheus.GaugeVec
	startLatency   *prometheus.HistogramVec
	runDuration    *prometheus.HistogramVec
	sessions       prometheus.Gauge
	attachBytes    *prometheus.CounterVec
	idleReaps      prometheus.Counter
	attachExpiries prometheus.Counter
	lifetimeStops  prometheus.Counter
	uploadBytes    prometheus.Counter
	logLines       prometheus.Counter
	logDropped     prometheus.Counter
	quotaRefusals  *prometheus.CounterVec
	recordsPruned  *prometheus.CounterVec
}

// newMetrics registers the metrics with reg; a nil reg keeps them to
// itself.
func newMetrics(reg prometheus.Registerer, sizes []Size) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_oneoffs_started_total",
			Help: "One-offs whose container started, by mode and size.",
		}, []string{"mode", "size"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_oneoffs_finished_total",
			Help: "One-offs that finished, by mode and outcome.",
		}, []string{"mode", "outcome"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "oneoffd_oneoffs_running",
			Help: "One-offs whose container runs now, by mode.",
		}, []string{"mode"}),
		nodeRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "oneoffd_node_oneoffs_running",
			Help: "One-offs whose container runs now, by the node that runs it.",
		}, []string{"node"}),
		startLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oneoffd_start_latency_seconds",
			Help:    "Time from a one-off's request to its container running, by mode (an attached one-off's includes the wait for its terminal).",
			Buckets: []float64{0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 120, 300},
		}, []string{"mode"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oneoffd_run_duration_seconds",
			Help:    "Time one-offs ran, from the container's start to the end, by mode.",
			Buckets: []float64{1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600},
		}, []string{"mode"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffd_attach_sessions_open",
			Help: "Terminals attached to one-offs now.",
		}),
		attachBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_attach_bytes_total",
			Help: "Bytes through attach sessions: in from the terminals, out to them.",
		}, []string{"direction"}),
		idleReaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_idle_reaps_total",
			Help: "Attached one-offs closed and stopped for inactivity.",
		}),
		attachExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_attach_wait_expiries_total",
			Help: "Attached one-offs discarded because no terminal attached in time.",
		}),
		lifetimeStops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_lifetime_stops_total",
			Help: "One-offs stopped for running past their lifetime (attached ones for --max-lifetime, detached ones for their TTL).",
		}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_upload_bytes_total",
			Help: "Bytes of files put into one-offs' containers.",
		}),
		logLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_log_lines_ingested_total",
			Help: "Lines of detached one-offs' output stored in the apps' logs.",
		}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_log_lines_dropped_total",
			Help: "Lines of detached one-offs' output the log store refused.",
		}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_quota_refusals_total",
			Help: "One-offs refused for a quota: the app's (app) or the daemon's (total).",
		}, []string{"quota"}),
		recordsPruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_records_pruned_total",
			Help: "Records deleted after the retention: finished one-offs (oneoff) and audit events (audit).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.started, m.finished, m.running, m.nodeRunning, m.startLatency, m.runDuration, m.sessions,
		m.attachBytes, m.idleReaps, m.attachExpiries, m.lifetimeStops, m.uploadBytes, m.logLines, m.logDropped,
		m.quotaRefusals, m.recordsPruned)
	// Every series exists from the start, at zero, so that rates and
	// alerts see the first event.
	for _, mode := range []Mode{Attached, Detached} {
		m.running.WithLabelValues(string(mode))
		m.startLatency.WithLabelValues(string(mode))
		m.runDuration.WithLabelValues(string(mode))
		for _, s := range sizes {
			m.started.WithLabelValues(string(mode), s.Name)
		}
		for _, o := range []Outcome{Exited, Stopped, IdleTimeout, AttachTimeout, Disconnected, Failed, Lost, LifetimeExceeded, OutOfMemory} {
			m.finished.WithLabelValues(string(mode), string(o))
		}
	}
	m.quotaRefusals.WithLabelValues("app")
	m.quotaRefusals.WithLabelValues("total")
	m.recordsPruned.WithLabelValues("oneoff")
	m.recordsPruned.WithLabelValues("audit")
	m.attachBytes.WithLabelValues("in")
	m.attachBytes.WithLabelValues("out")
	return m
}

// started counts a one-off whose container just started.
func (m *Manager) started(rec OneOff) {
	m.met.started.WithLabelValues(string(rec.Mode), rec.Size).Inc()
	m.met.runningOn(rec, 1)
	if rec.StartedAt != nil {
		m.met.startLatency.WithLabelValues(string(rec.Mode)).Observe(rec.StartedAt.Sub(rec.CreatedAt).Seconds())
	}
}

// runningOn moves the running gauges of rec's mode and node by delta.
func (m *metrics) runningOn(rec OneOff, delta float64) {
	m.running.WithLabelValues(string(rec.Mode)).Add(delta)
	if rec.Node != "" {
		m.nodeRunning.WithLabelValues(rec.Node).Add(delta)
	}
}
