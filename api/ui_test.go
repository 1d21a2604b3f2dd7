package api_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
)

// uiRequest is one call to the operators' page.
type uiRequest struct {
	method, path string
	// auth is the Authorization header, if any.
	auth string
	// header holds more request headers, e.g. Origin or Sec-Fetch-Site.
	header map[string]string
	// user and password, when set, go as HTTP Basic auth.
	user, password string
}

// ui sends req without following redirects, and returns the response and
// its body.
func (s *apiServer) ui(t *testing.T, req uiRequest) (*http.Response, string) {
	t.Helper()
	r, err := http.NewRequest(req.method, s.url+req.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.auth != "" {
		r.Header.Set("Authorization", req.auth)
	}
	if req.user != "" || req.password != "" {
		r.SetBasicAuth(req.user, req.password)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.method, req.path, err)
	}
	return resp, string(body)
}

// createPending starts an attached one-off nobody attaches to.
func (s *apiServer) createPending(t *testing.T, line, requester string) oneoff.OneOff {
	t.Helper()
	o, _, err := s.m.Create(context.Background(), testApp, oneoff.Request{
		Command: oneoff.Command{Line: line}, TTY: true, Requester: requester,
	})
	if err != nil {
		t.Fatalf("create one-off: %v", err)
	}
	return o
}

func TestUI_authenticate(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	tests := []struct {
		name string
		req  uiRequest
		want int
	}{
		{"no credentials", uiRequest{}, http.StatusUnauthorized},
		{"basic with the token", uiRequest{user: "alice", password: token}, http.StatusOK},
		{"basic with no user name", uiRequest{password: token}, http.StatusOK},
		{"basic with a wrong password", uiRequest{user: "alice", password: "wrong"}, http.StatusUnauthorized},
		{"basic with the token as user name", uiRequest{user: token, password: "x"}, http.StatusUnauthorized},
		{"bearer token", uiRequest{auth: "Bearer " + token}, http.StatusOK},
		{"wrong bearer token", uiRequest{auth: "Bearer wrong"}, http.StatusUnauthorized},
		{"other scheme", uiRequest{auth: "Token " + token}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.method, tt.req.path = "GET", "/ui"
			resp, body := s.ui(t, tt.req)
			if resp.StatusCode != tt.want {
				t.Fatalf("got status %d, want %d (body %q)", resp.StatusCode, tt.want, body)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/html") {
				t.Errorf("got content type %q, want text/html", got)
			}
			challenge := resp.Header.Get("WWW-Authenticate")
			if tt.want == http.StatusUnauthorized && !strings.HasPrefix(challenge, `Basic realm="oneoffd"`) {
				t.Errorf("got WWW-Authenticate %q, want a Basic challenge for realm oneoffd", challenge)
			}
			if tt.want == http.StatusOK && challenge != "" {
				t.Errorf("got WWW-Authenticate %q on a success", challenge)
			}
		})
	}

	t.Run("no token configured refuses everyone", func(t *testing.T) {
		open := newAPIServer(t, api.Config{})
		for _, req := range []uiRequest{{password: ""}, {user: "alice", password: ""}, {auth: "Bearer "}} {
			req.method, req.path = "GET", "/ui"
			if resp, _ := open.ui(t, req); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%+v: got status %d, want 401", req, resp.StatusCode)
			}
		}
	})
	t.Run("the stop route needs the token too", func(t *testing.T) {
		o := s.createPending(t, "sleep 1", "")
		resp, _ := s.ui(t, uiRequest{method: "POST", path: "/ui/oneoffs/" + o.ID + "/stop"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got status %d, want 401", resp.StatusCode)
		}
		if got, _ := s.m.Get(context.Background(), o.ID); got.State != oneoff.Pending {
			t.Errorf("got state %s after an unauthenticated stop, want pending", got.State)
		}
	})
}

func TestUI_page(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	o := s.createPending(t, "echo <b>bold</b>; <script>alert(1)</script>", "alice@example.com")
	done := s.createPending(t, "true", "bob@example.com")
	if _, err := s.m.Stop(context.Background(), done.ID, "test"); err != nil {
		t.Fatal(err)
	}
	auth := uiRequest{method: "GET", user: "ops", password: token}

	t.Run("lists the one-offs", func(t *testing.T) {
		auth.path = "/ui"
		resp, body := s.ui(t, auth)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got status %d, want 200 (body %q)", resp.StatusCode, body)
		}
		for _, want := range []string{
			o.Name, o.ID, testApp, "alice@example.com", "pending", "attached",
			"echo &lt;b&gt;bold&lt;/b&gt;; &lt;script&gt;alert(1)&lt;/script&gt;",
			`action="/ui/oneoffs/` + o.ID + `/stop"`,
			"<td>" + fakeruntime.Node + "</td>", // where it runs
			done.Name, "bob@example.com", "stopped",
			`<meta http-equiv="refresh" content="5; url=/ui">`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		for _, unwanted := range []string{"<b>bold", "<script>alert"} {
			if strings.Contains(body, unwanted) {
				t.Errorf("the page has %q unescaped", unwanted)
			}
		}
		if strings.Contains(body, `action="/ui/oneoffs/`+done.ID+`/stop"`) {
			t.Errorf("the page offers to stop a finished one-off")
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("got Content-Security-Policy %q, want default-src 'none'", csp)
		}
	})

	filters := []struct {
		query   string
		status  int
		listed  bool
		refresh string
	}{
		{"?app=" + testApp, http.StatusOK, true, "/ui?app=" + testApp},
		{"?app=other", http.StatusOK, false, "/ui?app=other"},
		{"?mode=attached", http.StatusOK, true, "/ui?mode=attached"},
		{"?mode=detached", http.StatusOK, false, "/ui?mode=detached"},
		{"?app=" + testApp + "&mode=attached", http.StatusOK, true, "/ui?app=" + testApp + "&amp;mode=attached"},
		{"?mode=sideways", http.StatusBadRequest, true, "/ui"},
	}
	for _, tt := range filters {
		t.Run("filter "+tt.query, func(t *testing.T) {
			auth.path = "/ui" + tt.query
			resp, body := s.ui(t, auth)
			if resp.StatusCode != tt.status {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := strings.Contains(body, o.Name); got != tt.listed {
				t.Errorf("lists %s: got %v, want %v", o.Name, got, tt.listed)
			}
			if want := `content="5; url=` + tt.refresh + `"`; !strings.Contains(body, want) {
				t.Errorf("the page lacks %s: the refresh must keep the filter", want)
			}
		})
	}
}

func TestUI_stop(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	sameSite := map[string]string{"Origin": s.url, "Sec-Fetch-Site": "same-origin"}

	t.Run("cross-site requests are refused", func(t *testing.T) {
		o := s.createPending(t, "sleep 60", "alice@example.com")
		u, _ := url.Parse(s.url)
		for _, header := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site"},
			{"Sec-Fetch-Site": "same-site"},
			{"Origin": "http://evil.example"},
			{"Origin": "http://evil.example:" + u.Port()},
		} {
			resp, body := s.ui(t, uiRequest{method: "POST", path: "/ui/oneoffs/" + o.ID + "/stop",
				user: "ops", password: token, header: header})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%v: got status %d, want 403 (body %q)", header, resp.StatusCode, body)
			}
		}
		if got, _ := s.m.Get(context.Background(), o.ID); got.State != oneoff.Pending {
			t.Errorf("got state %s after cross-site stops, want pending", got.State)
		}
	})

	t.Run("stops and goes back to the list", func(t *testing.T) {
		o := s.createPending(t, "sleep 60", "alice@example.com")
		resp, body := s.ui(t, uiRequest{method: "POST", path: "/ui/oneoffs/" + o.ID + "/stop?app=" + testApp,
			user: "ops", password: token, header: sameSite})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("got status %d, want 303 (body %q)", resp.StatusCode, body)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Path != "/ui" || loc.Query().Get("app") != testApp || loc.Query().Get("stopped") != o.ID {
			t.Errorf("got Location %q, want /ui keeping app=%s, with stopped=%s", resp.Header.Get("Location"), testApp, o.ID)
		}
		rec, err := s.m.Get(context.Background(), o.ID)
		if err != nil || rec.State != oneoff.Finished || rec.Outcome != oneoff.Stopped {
			t.Errorf("got state %q, outcome %q (%v); want finished, stopped", rec.State, rec.Outcome, err)
		}
		events, err := s.m.Audit(context.Background(), oneoff.AuditFilter{OneOffID: o.ID})
		if err != nil {
			t.Fatal(err)
		}
		var actor string
		for _, e := range events {
			if e.Action == oneoff.AuditStop {
				actor = e.Actor
			}
		}
		if actor != "ui:ops" {
			t.Errorf("got stop actor %q in the audit trail, want ui:ops", actor)
		}

		_, page := s.ui(t, uiRequest{method: "GET", path: loc.String(), user: "ops", password: token})
		if want := o.Name + " stopped."; !strings.Contains(page, want) {
			t.Errorf("the page after the redirect lacks the notice %q", want)
		}
	})

	t.Run("a non-browser client with a bearer token may stop", func(t *testing.T) {
		o := s.createPending(t, "sleep 60", "")
		resp, _ := s.ui(t, uiRequest{method: "POST", path: "/ui/oneoffs/" + o.ID + "/stop", auth: "Bearer " + token})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("got status %d, want 303", resp.StatusCode)
		}
		if rec, _ := s.m.Get(context.Background(), o.ID); rec.Outcome != oneoff.Stopped {
			t.Errorf("got outcome %q, want stopped", rec.Outcome)
		}
	})

	t.Run("unknown one-off", func(t *testing.T) {
		resp, body := s.ui(t, uiRequest{method: "POST", path: "/ui/oneoffs/nosuchid/stop",
			user: "ops", password: token, header: sameSite})
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "nosuchid") {
			t.Errorf("got status %d (body %q), want 404 naming the id", resp.StatusCode, body)
		}
	})
}
