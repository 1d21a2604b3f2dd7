package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

// newCronServer is the HTTP API with a scheduler, on a fake runtime and a
// real store.
func newCronServer(t *testing.T) *apiServer {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.DiscardHandler)
	rules := cron.Rules{Sizes: []string{"S", "M"}}
	deploys := deploy.NewService(db, deploy.WithCron(rules))
	m := oneoff.NewManager(oneoff.Config{Instance: "test"}, fakeruntime.New(), db, deploys, &fakeruntime.Logs{}, log)
	sched := cron.New(cron.Config{Rules: rules}, m, deploys, db, log)
	if err := sched.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sched.Close(context.Background()) })
	srv := api.NewServer(api.Config{Token: token}, api.Deps{OneOffs: m, Deploys: deploys, Log: log, Cron: sched})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &apiServer{harness: &harness{m: m, deploys: deploys, log: log}, url: ts.URL}
}

func TestServer_cron(t *testing.T) {
	s := newCronServer(t)
	deployBody := func(cronDoc string) string {
		return `{"image": "registry.example.com/web:v1", "cron": ` + cronDoc + `}`
	}
	status, body := s.do(t, request{method: "POST", path: "/v1/apps/web/deployments", token: token,
		body: deployBody(`{"jobs": [{"command": "*/10 * * * * rake cleanup", "size": "M"}, {"name": "report", "schedule": "@daily", "command": "./report", "size": "XXL"}]}`)})
	if status != http.StatusBadRequest || !strings.Contains(string(body), `cron job \"report\": size \"XXL\" is unknown`) {
		t.Fatalf("deploy with an unknown size: got %d %s, want 400 naming the job", status, body)
	}
	if status, body := s.do(t, request{method: "GET", path: "/v1/apps/web", token: token}); status != http.StatusNotFound {
		t.Fatalf("app after a refused release: got %d %s, want 404: no release registered", status, body)
	}

	status, body = s.do(t, request{method: "POST", path: "/v1/apps/web/deployments", token: token,
		body: deployBody(`{"jobs": [{"command": "*/10 * * * * rake cleanup", "size": "M"}]}`)})
	if status != http.StatusCreated {
		t.Fatalf("deploy: got %d %s", status, body)
	}
	if !strings.Contains(string(body), `"name": "rake-cleanup"`) {
		t.Fatalf("release: got %s, want its cron jobs named", body)
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/apps/web/cron", token: token})
	var jobs api.CronJobs
	if status != http.StatusOK || json.Unmarshal(body, &jobs) != nil || len(jobs.Jobs) != 1 {
		t.Fatalf("list: got %d %s", status, body)
	}
	if j := jobs.Jobs[0]; j.Name != "rake-cleanup" || j.Schedule != "*/10 * * * *" || j.Timezone != "UTC" || j.NextRunAt.IsZero() || j.LastRun != nil {
		t.Errorf("job: got %+v", j)
	}

	status, body = s.do(t, request{method: "POST", path: "/v1/apps/web/cron/rake-cleanup/runs", token: token})
	var run cron.Run
	if status != http.StatusCreated || json.Unmarshal(body, &run) != nil {
		t.Fatalf("run now: got %d %s", status, body)
	}
	if run.Status != cron.Started || run.Trigger != cron.Manual || !strings.HasPrefix(run.OneOffName, "cron-rake-cleanup-") {
		t.Errorf("run: got %+v", run)
	}
	o, err := s.m.Get(context.Background(), run.OneOffID)
	if err != nil || o.Mode != oneoff.Detached || o.Requester != "cron" {
		t.Errorf("the run's one-off: got %+v, %v, want detached, asked for by cron", o, err)
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/apps/web/cron/rake-cleanup/runs?limit=5", token: token})
	var hist api.CronRuns
	if status != http.StatusOK || json.Unmarshal(body, &hist) != nil || len(hist.Runs) != 1 || hist.Runs[0].OneOffID != run.OneOffID {
		t.Fatalf("history: got %d %s", status, body)
	}

	// The operators' page shows the job and its last run.
	req, _ := http.NewRequest("GET", s.url+"/ui?app=web", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `id="cron-web-rake-cleanup"`) || !strings.Contains(string(page), run.OneOffName) {
		t.Errorf("/ui: got %s, want the cron job with its last run %s", page, run.OneOffName)
	}

	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/v1/apps/web/cron/nope/runs", http.StatusNotFound},
		{"GET", "/v1/apps/web/cron/nope/runs", http.StatusNotFound},
		{"GET", "/v1/apps/nope/cron", http.StatusNotFound},
		{"GET", "/v1/apps/web/cron/rake-cleanup/runs?limit=0", http.StatusBadRequest},
	} {
		if status, body := s.do(t, request{method: tt.method, path: tt.path, token: token}); status != tt.want {
			t.Errorf("%s %s: got %d %s, want %d", tt.method, tt.path, status, body, tt.want)
		}
	}

	// A release without cron removes the jobs.
	if status, body := s.do(t, request{method: "POST", path: "/v1/apps/web/deployments", token: token,
		body: `{"image": "registry.example.com/web:v2"}`}); status != http.StatusCreated {
		t.Fatalf("deploy: got %d %s", status, body)
	}
	status, body = s.do(t, request{method: "GET", path: "/v1/apps/web/cron", token: token})
	if status != http.StatusOK || !strings.Contains(string(body), `"jobs": []`) {
		t.Errorf("list after a release without cron: got %d %s, want no jobs", status, body)
	}
}

func TestServer_cronDisabled(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	if status, body := s.do(t, request{method: "GET", path: "/v1/apps/web/cron", token: token}); status != http.StatusNotFound {
		t.Errorf("list without a scheduler: got %d %s, want 404", status, body)
	}
	status, body := s.do(t, request{method: "POST", path: "/v1/apps/web/deployments", token: token,
		body: `{"image": "registry.example.com/web:v1", "cron": {"jobs": [{"command": "@daily x"}]}}`})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "cron_unsupported") {
		t.Errorf("deploy with cron to a daemon without a scheduler: got %d %s, want 400", status, body)
	}
}
