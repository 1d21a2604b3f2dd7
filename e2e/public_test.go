package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// TestUnauthenticated: what a peer without the token learns from the
// routes that need none, and that /metrics is not one of them.
func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	t.Run("readyz names the failed check, not the engine's address", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "--docker-host", "unix:///nonexistent/docker.sock")
		status, body := testenv.Get(t, d.api+"/readyz", "")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"engine"`) {
			t.Errorf("readyz = %d %s, want 503 naming the engine", status, body)
		}
		if strings.Contains(body, "nonexistent") || strings.Contains(body, "docker.sock") || strings.Contains(body, d.dataDir) {
			t.Errorf("readyz = %s, which holds the engine's address or a path", body)
		}
		if !strings.Contains(d.logs.String(), "nonexistent/docker.sock") {
			t.Errorf("the daemon's log does not say what failed")
		}
	})
	t.Run("metrics need the token", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t)
		if status, _ := testenv.Get(t, d.api+"/metrics", ""); status != http.StatusUnauthorized {
			t.Errorf("/metrics without a token = %d, want 401", status)
		}
		if status, _ := testenv.Get(t, d.api+"/metrics", d.token); status != http.StatusOK {
			t.Errorf("/metrics with the token = %d, want 200", status)
		}
	})
	t.Run("metrics public", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "--metrics-public")
		if status, body := testenv.Get(t, d.api+"/metrics", ""); status != http.StatusOK || !strings.Contains(body, "oneoffd_build_info") {
			t.Errorf("/metrics without a token = %d, want 200 and the metrics", status)
		}
	})
	t.Run("metrics on a listener of their own", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "--metrics-addr", "127.0.0.1:0")
		addr := ""
		for _, line := range strings.Split(d.logs.String(), "\n") {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "oneoffd ready" {
				addr, _ = entry["metrics_addr"].(string)
			}
		}
		if addr == "" {
			t.Fatal("the ready line names no metrics_addr")
		}
		if status, body := testenv.Get(t, "http://"+addr+"/metrics", ""); status != http.StatusOK || !strings.Contains(body, "oneoffd_attach_pending_connections") {
			t.Errorf("metrics listener = %d, want 200 and the metrics", status)
		}
		if status, _ := testenv.Get(t, d.api+"/metrics", d.token); status != http.StatusNotFound {
			t.Errorf("the API's /metrics = %d, want 404: they are served elsewhere", status)
		}
	})
}
