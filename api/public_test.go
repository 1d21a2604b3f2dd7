package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

func TestServer_readyzLeaksNothing(t *testing.T) {
	secret := "unix:///run/secret/docker.sock at /var/lib/oneoffd/oneoffd.db"
	srv := api.NewServer(api.Config{Token: "token"}, api.Deps{Log: slog.New(slog.DiscardHandler), Ready: map[string]api.Checker{
		"engine": func(context.Context) error {
			return errdefs.Unavailable("engine_unavailable", errors.New(secret), "the engine at %s does not answer", secret)
		},
		"database": func(context.Context) error { return errors.New("open " + secret + ": permission denied") },
		"fine":     func(context.Context) error { return nil },
	}})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	status, body := testenv.Get(t, ts.URL+"/readyz", "")
	if status != http.StatusServiceUnavailable {
		t.Errorf("got status %d, want 503", status)
	}
	if strings.Contains(body, "/run/secret") || strings.Contains(body, "/var/lib") || strings.Contains(body, "unix:") {
		t.Errorf("readyz says %s, which holds the errors' details", body)
	}
	var got struct{ Failures map[string]string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Failures) != 2 || !strings.HasPrefix(got.Failures["engine"], "engine_unavailable") || got.Failures["database"] == "" {
		t.Errorf("got failures %q, want engine (by its code) and database", got.Failures)
	}
}

func TestServer_metricsToken(t *testing.T) {
	for _, public := range []bool{false, true} {
		srv := api.NewServer(api.Config{Token: "token", MetricsPublic: public}, api.Deps{
			Log: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()})
		ts := httptest.NewServer(srv.Handler())
		status, _ := testenv.Get(t, ts.URL+"/metrics", "")
		want := http.StatusUnauthorized
		if public {
			want = http.StatusOK
		}
		if status != want {
			t.Errorf("public %v, no token: got status %d, want %d", public, status, want)
		}
		if status, _ := testenv.Get(t, ts.URL+"/metrics", "token"); status != http.StatusOK {
			t.Errorf("public %v, with the token: got status %d, want 200", public, status)
		}
		ts.Close()
	}
}
