package logs

import "github.com/prometheus/client_golang/prometheus"

var (
	drainSentDesc = prometheus.NewDesc("oneoffd_drain_lines_sent_total",
		"Lines written to log drains; a line sent again after a lost connection counts again.", nil, nil)
	drainDroppedDesc = prometheus.NewDesc("oneoffd_drain_lines_dropped_total",
		"Lines dropped by log drains whose buffer was full.", nil, nil)
	drainErrorsDesc = prometheus.NewDesc("oneoffd_drain_errors_total",
		"Failed connections and writes of log drains, and connections found closed.", nil, nil)
	drainBufferedDesc = prometheus.NewDesc("oneoffd_drain_lines_buffered",
		"Lines waiting in log drains' buffers.", nil, nil)
	drainsDesc = prometheus.NewDesc("oneoffd_drains",
		"Log drains, by whether they are connected.", []string{"connected"}, nil)
)

// Describe is for prometheus.Collector: the drains' metrics.
func (ds *Drains) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{drainSentDesc, drainDroppedDesc, drainErrorsDesc, drainBufferedDesc, drainsDesc} {
		ch <- d
	}
}

// Collect is for prometheus.Collector: the drains' counts, added up, those
// of removed drains included.
func (ds *Drains) Collect(ch chan<- prometheus.Metric) {
	ds.mu.RLock()
	total := ds.retired
	var buffered, connected, disconnected int
	add := func(rd *routedDrain, live bool) {
		st := rd.drain.Stats()
		total.Sent += st.Sent
		total.Dropped += st.Dropped
		total.Errors += st.Errors
		if !live {
			return
		}
		buffered += st.Buffered
		if st.Connected {
			connected++
		} else {
			disconnected++
		}
	}
	for _, rd := range ds.global {
		add(rd, true)
	}
	for _, drains := range ds.apps {
		for _, rd := range drains {
			add(rd, true)
		}
	}
	for rd := range ds.stopping {
		add(rd, false)
	}
	ds.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(drainSentDesc, prometheus.CounterValue, float64(total.Sent))
	ch <- prometheus.MustNewConstMetric(drainDroppedDesc, prometheus.CounterValue, float64(total.Dropped))
	ch <- prometheus.MustNewConstMetric(drainErrorsDesc, prometheus.CounterValue, float64(total.Errors))
	ch <- prometheus.MustNewConstMetric(drainBufferedDesc, prometheus.GaugeValue, float64(buffered))
	ch <- prometheus.MustNewConstMetric(drainsDesc, prometheus.GaugeValue, float64(connected), "true")
	ch <- prometheus.MustNewConstMetric(drainsDesc, prometheus.GaugeValue, float64(disconnected), "false")
}
