package cron

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus metrics. The counters carry only
// labels of a fixed set of values; the failures gauge has one series per
// job currently defined, removed with the job.
type metrics struct {
	runs     *prometheus.CounterVec
	skips    prometheus.Counter
	misses   prometheus.Counter
	delay    prometheus.Histogram
	failures *prometheus.GaugeVec
}

// newMetrics registers the metrics with reg; a nil reg keeps them to itself.
func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_cron_runs_total",
			Help: "Cron job runs, by outcome: succeeded (exit status 0), failed (any other end) or start_failed.",
		}, []string{"outcome"}),
		skips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_cron_skips_total",
			Help: "Cron job due times skipped because the previous run still ran and the job forbids overlap.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oneoffd_cron_misses_total",
			Help: "Cron jobs whose due times passed while the daemon was down: each catch-up or give-up counts once, however many due times it covers.",
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffd_cron_schedule_delay_seconds",
			Help:    "Time from a cron job's due time to its one-off being started.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "oneoffd_cron_job_consecutive_failures",
			Help: "Runs of a cron job that failed in a row, up to its latest; 0 once one succeeds.",
		}, []string{"app", "cron_job"}),
	}
	for _, o := range []string{"succeeded", "failed", "start_failed"} {
		m.runs.WithLabelValues(o)
	}
	reg.MustRegister(m.runs, m.skips, m.misses, m.delay, m.failures)
	return m
}
