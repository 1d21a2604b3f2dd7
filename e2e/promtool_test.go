package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// docsDir holds the monitoring files the tests check.
var docsDir = filepath.Join("..", "docs")

// promtool returns the path of Prometheus's promtool. Without it the test
// is skipped on a laptop and fails in CI.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("no promtool, and CI needs it: apt-get install prometheus")
		}
		t.Skip("no promtool (apt-get install prometheus)")
	}
	return path
}

// TestPromtool checks the monitoring files in docs/ against promtool and
// against what a running daemon exposes at /metrics.
func TestPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	run := func(t *testing.T, stdin []byte, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = docsDir
		cmd.Stdin = bytes.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Run("rules", func(t *testing.T) { run(t, nil, "check", "rules", "alerts.yml") })
	t.Run("config", func(t *testing.T) { run(t, nil, "check", "config", "prometheus.yml") })

	scrape := scrapeAfterOneOff(t)
	exposed := exposedMetrics(scrape)

	t.Run("metrics", func(t *testing.T) {
		run(t, scrape, "check", "metrics")
		// The attached one-off left values behind.
		for _, want := range []string{
			`oneoffd_oneoffs_started_total{mode="attached",size="M"} 1`,
			`oneoffd_oneoffs_finished_total{mode="attached",outcome="exited"} 1`,
			`oneoffd_start_latency_seconds_count{mode="attached"} 1`,
		} {
			if !bytes.Contains(scrape, []byte(want+"\n")) {
				t.Errorf("the scrape lacks %s", want)
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		body, err := os.ReadFile(filepath.Join(docsDir, "grafana-dashboard.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash dashboard
		if err := json.Unmarshal(body, &dash); err != nil {
			t.Fatalf("grafana-dashboard.json is not valid JSON: %v", err)
		}
		if dash.SchemaVersion < 36 || dash.Title == "" || dash.UID == "" {
			t.Errorf("got schemaVersion %d, title %q, uid %q; want a schema from 36 on, a title and a uid",
				dash.SchemaVersion, dash.Title, dash.UID)
		}
		ids := map[int]bool{}
		var exprs int
		for _, p := range dash.all() {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs++
				if !strings.Contains(tg.Expr, "oneoffd_") && !strings.Contains(tg.Expr, "process_") && !strings.Contains(tg.Expr, "go_") {
					t.Errorf("panel %q: %q queries none of oneoffd's metrics", p.Title, tg.Expr)
				}
				for _, name := range metricNames(tg.Expr) {
					if !exposed[name] {
						t.Errorf("panel %q queries %s, which oneoffd does not expose", p.Title, name)
					}
				}
			}
		}
		if exprs < 20 {
			t.Errorf("got %d queries, want the dashboard's 20 or more", exprs)
		}
	})

	t.Run("alert metrics exist", func(t *testing.T) {
		body, err := os.ReadFile(filepath.Join(docsDir, "alerts.yml"))
		if err != nil {
			t.Fatal(err)
		}
		names := metricNames(string(body))
		if len(names) < 8 {
			t.Errorf("alerts.yml names %d metrics, want 8 or more", len(names))
		}
		for _, name := range names {
			if !exposed[name] {
				t.Errorf("alerts.yml names %s, which oneoffd does not expose", name)
			}
		}
	})
}

// scrapeAfterOneOff starts a daemon, runs one attached one-off through the
// CLI, and returns the daemon's /metrics once they count its end.
func scrapeAfterOneOff(t *testing.T) []byte {
	t.Helper()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	if out, err := d.cli("--app", app, "run", "--no-tty", "echo metered").CombinedOutput(); err != nil {
		t.Fatalf("oneoff run: %v: %s", err, out)
	}
	// A failed cron run, so that the per-job series exist.
	cronJobs := filepath.Join(t.TempDir(), "cron.json")
	if err := os.WriteFile(cronJobs, []byte(`{"jobs": [{"name": "metered", "schedule": "@daily", "command": "exit 1"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := d.cli("--app", app, "deploy", "--image", testenv.Image(t), "--cron", cronJobs).CombinedOutput(); err != nil {
		t.Fatalf("oneoff deploy --cron: %v: %s", err, out)
	}
	if out, err := d.cli("--app", app, "cron", "run", "metered").CombinedOutput(); err != nil {
		t.Fatalf("oneoff cron run: %v: %s", err, out)
	}
	// The CLI may have its exit code a moment before the daemon counts it.
	ended := []byte(`oneoffd_oneoffs_finished_total{mode="attached",outcome="exited"} 1` + "\n")
	cronEnded := []byte(`oneoffd_cron_runs_total{outcome="failed"} 1` + "\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		scrape := scrapeMetrics(t, d)
		if bytes.Contains(scrape, ended) && bytes.Contains(scrape, cronEnded) || time.Now().After(deadline) {
			return scrape
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrapeMetrics returns the daemon's /metrics.
func scrapeMetrics(t *testing.T, d *daemon) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", d.api+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: status %d, %v", resp.StatusCode, err)
	}
	return body
}

// exposedMetrics returns the metric families of a text-format scrape.
func exposedMetrics(scrape []byte) map[string]bool {
	names := map[string]bool{}
	for line := range strings.Lines(string(scrape)) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	return names
}

// metricRef finds the names of oneoffd's own, process and Go metrics in a
// PromQL expression.
var metricRef = regexp.MustCompile(`\b(?:oneoffd|process|go)_[a-zA-Z0-9_]+`)

// metricNames returns the metric families an expression refers to: a
// histogram's _bucket, _sum and _count series name the histogram.
func metricNames(expr string) []string {
	var names []string
	for _, m := range metricRef.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok {
				m = base
				break
			}
		}
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	return names
}

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
}

// panel is a Grafana panel, or a row holding collapsed panels.
type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// all returns the dashboard's panels, those in collapsed rows included.
func (d dashboard) all() []panel {
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	return all
}
