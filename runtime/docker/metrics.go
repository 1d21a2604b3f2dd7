package docker

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// engineMetrics measure the calls made to the engine.
type engineMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// engineOps are the operations measured, as their metrics label them.
var engineOps = []string{"ping", "create", "attach", "wait", "logs", "start", "copy", "resize", "signal", "stop", "remove", "list", "inspect", "pull", "network", "probe", "distribution_inspect"}

// Instrument registers the engine's metrics with reg: how long each kind of
// call takes, and how many fail.
func (d *Runtime) Instrument(reg prometheus.Registerer) {
	m := &engineMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oneoffd_engine_request_duration_seconds",
			Help:    "Time the Docker engine took to answer, by operation (for wait and logs: to begin answering).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffd_engine_errors_total",
			Help: "Calls to the Docker engine that failed, by operation.",
		}, []string{"operation"}),
	}
	reg.MustRegister(m.duration, m.errors)
	for _, op := range engineOps {
		m.duration.WithLabelValues(op)
		m.errors.WithLabelValues(op)
	}
	d.met = m
}

// timed starts timing a call; the returned function ends it.
func (d *Runtime) timed(op string) func() {
	if d.met == nil {
		return func() {}
	}
	start := time.Now()
	return func() { d.met.duration.WithLabelValues(op).Observe(time.Since(start).Seconds()) }
}

// failed counts a failed call; op is wrap's, whose first word names it.
func (d *Runtime) failed(op string) {
	if d.met == nil {
		return
	}
	name, _, _ := strings.Cut(op, " ")
	switch {
	case name == "read":
		name = "logs"
	case !slices.Contains(engineOps, name):
		name = "other"
	}
	d.met.errors.WithLabelValues(name).Inc()
}
