package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// scrape reads the daemon's /metrics into "name{label="value",...}" →
// value; a histogram gives its _count and _sum.
func (d *daemon) scrape() map[string]float64 {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.api+"/metrics", nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token) // the API's /metrics needs the token
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		d.t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.Histogram.GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// TestMetrics runs a script of one-offs (attached, detached, idle-reaped,
// never attached, stopped, with a file) and checks that each metric moved
// by exactly what happened.
func TestMetrics(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--idle-timeout", "2s", "--attach-wait-timeout", "1s", "--stop-grace", "1s")
	app := d.deploy(nil, "")
	c := d.client()
	ctx := context.Background()
	before := d.scrape()

	// 1. attached, exits by itself.
	if out, err := d.cli("--app", app, "run", "echo hi").CombinedOutput(); err != nil || string(out) != "hi\n" {
		t.Fatalf("attached run: %v, %q", err, out)
	}
	// 2. attached, reaped for inactivity.
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	tm.wait()
	// 3. attached, never attached.
	pending, err := c.CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	d.waitFinished(pending.ID)
	// 4. detached, exits 3 after a line.
	out, err := d.cli("--app", app, "run", "--detached", "--tail", "echo a; exit 3").CombinedOutput()
	if exitCode(t, err) != 3 {
		t.Fatalf("detached run: %v, %q", err, out)
	}
	// 5. detached, stopped.
	sleeper := d.startDetached(app, "sleep 600", "")
	if _, err := c.Stop(ctx, sleeper.ID); err != nil {
		t.Fatal(err)
	}
	// 6. detached, with a file of 1000 bytes, prints one line.
	file := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(file, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := d.cli("--app", app, "run", "--detached", "--tail", "--file", file, "wc -c < /tmp/uploads/data.bin").CombinedOutput(); err != nil || !strings.Contains(string(out), "1000") {
		t.Fatalf("upload run: %v, %q", err, out)
	}
	d.waitNoContainers()

	after := d.scrape()
	var bytesIn, bytesOut int64
	list, err := c.OneOffs(ctx, client.Filter{App: app})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list {
		bytesIn += o.BytesIn
		bytesOut += o.BytesOut
	}
	want := map[string]float64{
		`oneoffd_oneoffs_started_total{mode="attached",size="M"}`:                  2,
		`oneoffd_oneoffs_started_total{mode="detached",size="M"}`:                  3,
		`oneoffd_oneoffs_finished_total{mode="attached",outcome="exited"}`:         1,
		`oneoffd_oneoffs_finished_total{mode="attached",outcome="idle_timeout"}`:   1,
		`oneoffd_oneoffs_finished_total{mode="attached",outcome="attach_timeout"}`: 1,
		`oneoffd_oneoffs_finished_total{mode="detached",outcome="exited"}`:         2,
		`oneoffd_oneoffs_finished_total{mode="detached",outcome="stopped"}`:        1,
		`oneoffd_oneoffs_finished_total{mode="attached",outcome="failed"}`:         0,
		`oneoffd_oneoffs_running{mode="attached"}`:                                 0,
		`oneoffd_oneoffs_running{mode="detached"}`:                                 0,
		`oneoffd_start_latency_seconds_count{mode="attached"}`:                     2,
		`oneoffd_start_latency_seconds_count{mode="detached"}`:                     3,
		`oneoffd_run_duration_seconds_count{mode="attached"}`:                      2,
		`oneoffd_run_duration_seconds_count{mode="detached"}`:                      3,
		`oneoffd_attach_sessions_open`:                                             0,
		`oneoffd_attach_bytes_total{direction="in"}`:                               float64(bytesIn),
		`oneoffd_attach_bytes_total{direction="out"}`:                              float64(bytesOut),
		`oneoffd_idle_reaps_total`:                                                 1,
		`oneoffd_attach_wait_expiries_total`:                                       1,
		`oneoffd_lifetime_stops_total`:                                             0,
		`oneoffd_upload_bytes_total`:                                               1000,
		`oneoffd_log_lines_ingested_total`:                                         2,
		`oneoffd_log_lines_dropped_total`:                                          0,
		`oneoffd_engine_errors_total{operation="create"}`:                          0,
		`oneoffd_engine_request_duration_seconds_count{operation="create"}`:        6,
		`oneoffd_engine_request_duration_seconds_count{operation="start"}`:         5,
		`oneoffd_engine_request_duration_seconds_count{operation="copy"}`:          1,
	}
	for key, delta := range want {
		a, ok := after[key]
		if !ok {
			t.Errorf("%s: not exposed", key)
			continue
		}
		if got := a - before[key]; got != delta {
			t.Errorf("%s moved by %v, want %v", key, got, delta)
		}
	}
	if bytesOut < 3 {
		t.Errorf("the records count %d bytes out, want at least the 3 of \"hi\\n\"", bytesOut)
	}
	for _, gauge := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := after[gauge]; !ok {
			t.Errorf("%s: the Go and process collectors are missing", gauge)
		}
	}
}
