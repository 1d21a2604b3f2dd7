package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

const token = "test-token"

// apiServer is the HTTP API over a harness.
type apiServer struct {
	*harness
	url string
}

func newAPIServer(t *testing.T, cfg api.Config) *apiServer {
	t.Helper()
	h := newHarness(t)
	srv := api.NewServer(cfg, api.Deps{OneOffs: h.m, Deploys: h.deploys, Log: h.log})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &apiServer{harness: h, url: ts.URL}
}

// request is one call to the API.
type request struct {
	method, path string
	token        string // "" sends no Authorization header
	body         string
	contentType  string
}

// do sends req and returns the status and the body.
func (s *apiServer) do(t *testing.T, req request) (int, []byte) {
	t.Helper()
	r, err := http.NewRequest(req.method, s.url+req.path, strings.NewReader(req.body))
	if err != nil {
		t.Fatal(err)
	}
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.method, req.path, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: got content type %q, want application/json", req.method, req.path, ct)
	}
	return resp.StatusCode, body
}

// decode parses a JSON body into v.
func decode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// wantError checks an error response: its status and a body of the form
// {"error":{"code":...,"message":...}}.
func wantError(t *testing.T, status int, body []byte, wantStatus int, wantCode string) api.ErrorDetail {
	t.Helper()
	if status != wantStatus {
		t.Errorf("got status %d, want %d (body %s)", status, wantStatus, body)
	}
	var raw map[string]map[string]any
	decode(t, body, &raw)
	detail, ok := raw["error"]
	if !ok || len(raw) != 1 {
		t.Fatalf("got body %s, want {\"error\":{...}}", body)
	}
	code, _ := detail["code"].(string)
	msg, _ := detail["message"].(string)
	if code != wantCode {
		t.Errorf("got code %q, want %q", code, wantCode)
	}
	if msg == "" {
		t.Errorf("got an empty message in %s", body)
	}
	return api.ErrorDetail{Code: code, Message: msg}
}

func TestServer_healthz(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	status, body := s.do(t, request{method: "GET", path: "/healthz"})
	if status != http.StatusOK {
		t.Fatalf("got status %d, want 200", status)
	}
	var got struct {
		Status     string `json:"status"`
		APIVersion int    `json:"api_version"`
	}
	decode(t, body, &got)
	if got.Status != "ok" || got.APIVersion != 1 {
		t.Errorf("got %+v, want status ok, API version 1", got)
	}
}

func TestServer_authenticate(t *testing.T) {
	tests := []struct {
		name       string
		configured string // the daemon's token
		header     string // the Authorization header; "" sends none
		wantStatus int
		wantCode   string
	}{
		{name: "no token", configured: token, wantStatus: 401, wantCode: "token_required"},
		{name: "wrong token", configured: token, header: "Bearer nope", wantStatus: 401, wantCode: "wrong_token"},
		{name: "wrong scheme", configured: token, header: "Basic " + token, wantStatus: 401, wantCode: "wrong_token"},
		{name: "token as a prefix", configured: token, header: "Bearer " + token + "x", wantStatus: 401, wantCode: "wrong_token"},
		{name: "daemon without a token", configured: "", header: "Bearer ", wantStatus: 401, wantCode: "wrong_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAPIServer(t, api.Config{Token: tt.configured})
			r, err := http.NewRequest("GET", s.url+"/v1/apps", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			wantError(t, resp.StatusCode, body, tt.wantStatus, tt.wantCode)
		})
	}
	t.Run("right token", func(t *testing.T) {
		s := newAPIServer(t, api.Config{Token: token})
		if status, body := s.do(t, request{method: "GET", path: "/v1/apps", token: token}); status != http.StatusOK {
			t.Errorf("got status %d, want 200 (body %s)", status, body)
		}
	})
}

func TestServer_deploy(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	status, body := s.do(t, request{method: "POST", path: "/v1/apps/shop/deployments", token: token,
		contentType: "application/json",
		body:        `{"image":"registry.example.com/shop:v7","env":{"RAILS_ENV":"production","DATABASE_URL":"postgres://shop:hunter2@db/shop"},"procfile":"web: bin/web\nconsole: bin/rails console"}`})
	if status != http.StatusCreated {
		t.Fatalf("got status %d, want 201 (body %s)", status, body)
	}
	// Env values never leave the daemon, whichever route answers.
	noSecret := func(route string, body []byte) {
		t.Helper()
		if bytes.Contains(body, []byte("hunter2")) || bytes.Contains(body, []byte("production")) {
			t.Errorf("%s answers env values: %s", route, body)
		}
	}
	noSecret("POST /v1/apps/shop/deployments", body)
	var rel deploy.Release
	decode(t, body, &rel)
	if rel.App != "shop" || rel.Version != 1 || rel.Image != "registry.example.com/shop:v7" {
		t.Errorf("got release %+v, want shop v1 of registry.example.com/shop:v7", rel)
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/apps/shop", token: token})
	if status != http.StatusOK {
		t.Fatalf("got status %d, want 200 (body %s)", status, body)
	}
	var app deploy.App
	decode(t, body, &app)
	if app.Name != "shop" || app.Release == nil {
		t.Fatalf("got app %+v, want shop with a release", app)
	}
	noSecret("GET /v1/apps/shop", body)
	if got := app.Release; got.Version != 1 || !slices.Equal(got.EnvNames, []string{"DATABASE_URL", "RAILS_ENV"}) || got.Processes["console"] != "bin/rails console" {
		t.Errorf("got release %+v, want v1 with its env's names and processes", got)
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/apps", token: token})
	var list struct {
		Apps []deploy.App `json:"apps"`
	}
	decode(t, body, &list)
	noSecret("GET /v1/apps", body)
	if status != http.StatusOK || len(list.Apps) != 2 {
		t.Errorf("got status %d and %d apps, want 200 and 2 (web and shop)", status, len(list.Apps))
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/apps/nope", token: token})
	wantError(t, status, body, http.StatusNotFound, "app_not_found")
}

func TestServer_requestBodies(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		contentType string
		wantStatus  int
		wantCode    string
	}{
		{name: "bad Procfile", body: `{"image":"img","procfile":"web bin/web"}`, wantStatus: 400, wantCode: "invalid_procfile"},
		{name: "no image", body: `{"procfile":"web: bin/web"}`, wantStatus: 400, wantCode: "image_required"},
		{name: "malformed JSON", body: `{"image":`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "wrong type", body: `{"image":42}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "unknown field", body: `{"image":"img","imagee":"typo"}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "trailing object", body: `{"image":"img"} {}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "empty body", body: ``, wantStatus: 400, wantCode: "empty_body"},
		{name: "blank body", body: " \n", wantStatus: 400, wantCode: "empty_body"},
		{name: "not JSON content", body: `{"image":"img"}`, contentType: "text/plain", wantStatus: 400, wantCode: "unsupported_content_type"},
		{name: "over 1 MiB", body: `{"image":"img","procfile":"` + strings.Repeat("#", api.MaxJSONBody) + `"}`,
			wantStatus: 413, wantCode: "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAPIServer(t, api.Config{Token: token})
			status, body := s.do(t, request{method: "POST", path: "/v1/apps/shop/deployments", token: token,
				body: tt.body, contentType: tt.contentType})
			wantError(t, status, body, tt.wantStatus, tt.wantCode)
		})
	}

	t.Run("trailing bracket", func(t *testing.T) {
		s := newAPIServer(t, api.Config{Token: token})
		status, body := s.do(t, request{method: "POST", path: "/v1/apps/shop/deployments", token: token,
			body: `{"image":"img"}]`})
		wantError(t, status, body, http.StatusBadRequest, "invalid_json")
	})
}

// created is the answer to a one-off's creation.
type created struct {
	oneoff.OneOff
	AttachURL    string `json:"attach_url"`
	AttachSecret string `json:"attach_secret"`
}

func TestServer_createOneOff(t *testing.T) {
	path := "/v1/apps/" + testApp + "/oneoffs"
	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name       string
			path       string
			body       string
			wantStatus int
			wantCode   string
		}{
			{name: "unknown app", path: "/v1/apps/nope/oneoffs", body: `{"command":"bash"}`, wantStatus: 404, wantCode: "app_not_found"},
			{name: "bad app name", path: "/v1/apps/No_Such/oneoffs", body: `{"command":"bash"}`, wantStatus: 400, wantCode: "invalid_app_name"},
			{name: "bad env name", path: path, body: `{"command":"bash","env":{"1X":"y"}}`, wantStatus: 400, wantCode: "invalid_env_name"},
			{name: "no command", path: path, body: `{}`, wantStatus: 400, wantCode: "command_required"},
			{name: "unknown process type", path: path, body: `{"type":"worker"}`, wantStatus: 400, wantCode: "unknown_process_type"},
			{name: "command of the wrong type", path: path, body: `{"command":42}`, wantStatus: 400, wantCode: "invalid_json"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newAPIServer(t, api.Config{Token: token})
				status, body := s.do(t, request{method: "POST", path: tt.path, token: token, body: tt.body})
				d := wantError(t, status, body, tt.wantStatus, tt.wantCode)
				if tt.wantCode == "invalid_env_name" && !strings.Contains(d.Message, "1X") {
					t.Errorf("got message %q, want it to name 1X", d.Message)
				}
			})
		}
	})

	t.Run("success", func(t *testing.T) {
		s := newAPIServer(t, api.Config{Token: token, AttachAddr: ":5000"})
		status, body := s.do(t, request{method: "POST", path: path, token: token,
			body: `{"command":["ls","-l"],"env":{"DEBUG":"1"},"tty":false,"requester":"alice"}`})
		if status != http.StatusCreated {
			t.Fatalf("got status %d, want 201 (body %s)", status, body)
		}
		var got created
		decode(t, body, &got)
		if got.ID == "" || got.AttachSecret == "" {
			t.Fatalf("got id %q, secret %q; want both", got.ID, got.AttachSecret)
		}
		if got.State != oneoff.Pending || got.TTY || got.Requester != "alice" || strings.Join(got.Command, " ") != "ls -l" {
			t.Errorf("got %+v, want a pending one-off running ls -l without a TTY for alice", got.OneOff)
		}
		u, err := url.Parse(got.AttachURL)
		if err != nil {
			t.Fatalf("attach URL %q: %v", got.AttachURL, err)
		}
		if u.Scheme != "tcp" || u.Hostname() != "127.0.0.1" || u.Port() != "5000" || u.Path != "/"+got.ID {
			t.Errorf("got attach URL %q, want tcp://127.0.0.1:5000/%s", got.AttachURL, got.ID)
		}
		if bytes.Contains(body, []byte("secret_hash")) || bytes.Contains(body, []byte("SecretHash")) {
			t.Errorf("the answer leaks the secret's hash: %s", body)
		}

		status, body = s.do(t, request{method: "GET", path: "/v1/oneoffs/" + got.ID, token: token})
		var rec oneoff.OneOff
		decode(t, body, &rec)
		if status != http.StatusOK || rec.ID != got.ID || rec.Name != got.Name {
			t.Errorf("GET: got status %d, one-off %q; want 200, %q", status, rec.ID, got.ID)
		}
		if bytes.Contains(body, []byte("attach_secret")) {
			t.Errorf("GET leaks the attach secret: %s", body)
		}
	})

	t.Run("attach URL", func(t *testing.T) {
		tests := []struct {
			name string
			cfg  api.Config
			want string // with ID for the one-off's id
		}{
			{name: "default port", cfg: api.Config{}, want: "tcp://127.0.0.1:5000/ID"},
			{name: "configured host", cfg: api.Config{AttachHost: "attach.example.com:7000", AttachAddr: ":5000"},
				want: "tcp://attach.example.com:7000/ID"},
			{name: "TLS", cfg: api.Config{AttachAddr: "0.0.0.0:6000", AttachTLS: true}, want: "tls://127.0.0.1:6000/ID"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.cfg.Token = token
				s := newAPIServer(t, tt.cfg)
				status, body := s.do(t, request{method: "POST", path: path, token: token, body: `{"command":"bash"}`})
				if status != http.StatusCreated {
					t.Fatalf("got status %d, want 201 (body %s)", status, body)
				}
				var got created
				decode(t, body, &got)
				if want := strings.Replace(tt.want, "ID", got.ID, 1); got.AttachURL != want {
					t.Errorf("got %q, want %q", got.AttachURL, want)
				}
			})
		}
	})

	t.Run("engine unavailable", func(t *testing.T) {
		s := newAPIServer(t, api.Config{Token: token})
		s.rt.CreateErr = errdefs.Unavailable("engine_unavailable", errors.New("dial unix /var/run/docker.sock: connect: no such file"),
			"the container engine does not answer: is Docker running?")
		status, body := s.do(t, request{method: "POST", path: path, token: token, body: `{"command":"bash"}`})
		d := wantError(t, status, body, http.StatusServiceUnavailable, "engine_unavailable")
		if strings.Contains(d.Message, "docker.sock") {
			t.Errorf("got message %q, want the cause kept out of it", d.Message)
		}
	})
}

func TestServer_listOneOffs(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	for range 2 {
		if status, body := s.do(t, request{method: "POST", path: "/v1/apps/" + testApp + "/oneoffs", token: token,
			body: `{"command":"bash"}`}); status != http.StatusCreated {
			t.Fatalf("create: got status %d (body %s)", status, body)
		}
	}
	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			query    string
			wantCode string
		}{
			{query: "state=bogus", wantCode: "invalid_state"},
			{query: "mode=bogus", wantCode: "invalid_mode"},
			{query: "limit=-1", wantCode: "invalid_limit"},
			{query: "limit=ten", wantCode: "invalid_limit"},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				status, body := s.do(t, request{method: "GET", path: "/v1/oneoffs?" + tt.query, token: token})
				wantError(t, status, body, http.StatusBadRequest, tt.wantCode)
			})
		}
	})
	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			query string
			want  int
		}{
			{query: "app=", want: 2},
			{query: "state=pending", want: 2},
			{query: "state=finished", want: 0},
			{query: "app=" + testApp + "&mode=attached&limit=1", want: 1},
			{query: "app=other", want: 0},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				status, body := s.do(t, request{method: "GET", path: "/v1/oneoffs?" + tt.query, token: token})
				var got struct {
					OneOffs []oneoff.OneOff `json:"oneoffs"`
				}
				decode(t, body, &got)
				if status != http.StatusOK || got.OneOffs == nil || len(got.OneOffs) != tt.want {
					t.Errorf("got status %d and %d one-offs (%s), want 200 and %d", status, len(got.OneOffs), body, tt.want)
				}
			})
		}
	})
}

func TestServer_stopOneOff(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	status, body := s.do(t, request{method: "POST", path: "/v1/apps/" + testApp + "/oneoffs", token: token, body: `{"command":"bash"}`})
	if status != http.StatusCreated {
		t.Fatalf("create: got status %d (body %s)", status, body)
	}
	var c created
	decode(t, body, &c)

	status, body = s.do(t, request{method: "POST", path: "/v1/oneoffs/" + c.ID + "/stop", token: token})
	var rec oneoff.OneOff
	decode(t, body, &rec)
	if status != http.StatusOK || rec.State != oneoff.Finished || rec.Outcome != oneoff.Stopped {
		t.Errorf("got status %d, state %q, outcome %q; want 200, finished, stopped", status, rec.State, rec.Outcome)
	}

	// Stopping again answers the same: stop is idempotent.
	status, body = s.do(t, request{method: "POST", path: "/v1/oneoffs/" + c.ID + "/stop", token: token})
	decode(t, body, &rec)
	if status != http.StatusOK || rec.Outcome != oneoff.Stopped {
		t.Errorf("second stop: got status %d, outcome %q; want 200, stopped", status, rec.Outcome)
	}

	status, body = s.do(t, request{method: "POST", path: "/v1/oneoffs/nosuchid/stop", token: token})
	wantError(t, status, body, http.StatusNotFound, "oneoff_not_found")

	status, body = s.do(t, request{method: "GET", path: "/v1/oneoffs/nosuchid", token: token})
	wantError(t, status, body, http.StatusNotFound, "oneoff_not_found")
}

func TestServer_routes(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	t.Run("unknown route", func(t *testing.T) {
		status, body := s.do(t, request{method: "GET", path: "/nope"})
		wantError(t, status, body, http.StatusNotFound, "route_not_found")
	})
	t.Run("unknown route under /v1", func(t *testing.T) {
		status, body := s.do(t, request{method: "GET", path: "/v1/nope", token: token})
		wantError(t, status, body, http.StatusNotFound, "route_not_found")
	})
	t.Run("unknown route under /v1 without a token", func(t *testing.T) {
		status, body := s.do(t, request{method: "GET", path: "/v1/nope"})
		wantError(t, status, body, http.StatusUnauthorized, "token_required")
	})
	t.Run("wrong method", func(t *testing.T) {
		status, body := s.do(t, request{method: "DELETE", path: "/healthz"})
		wantError(t, status, body, http.StatusMethodNotAllowed, "method_not_allowed")
	})
}
