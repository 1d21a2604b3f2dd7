package api_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/oneoff"
)

// TestServer_oneOffByName checks that every route taking a one-off takes
// its name as well as its id, in the app ?app= names.
func TestServer_oneOffByName(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	if _, err := s.deploys.Deploy(context.Background(), "shop", deploy.Spec{Image: "registry.example.com/shop:v1"}); err != nil {
		t.Fatal(err)
	}
	status, body := s.do(t, request{method: "POST", path: "/v1/apps/" + testApp + "/oneoffs", token: token, body: `{"command":"bash"}`})
	if status != http.StatusCreated {
		t.Fatalf("create: got status %d (body %s)", status, body)
	}
	var c created
	decode(t, body, &c)

	for _, path := range []string{"/v1/oneoffs/" + c.Name, "/v1/oneoffs/" + c.Name + "?app=" + testApp} {
		status, body = s.do(t, request{method: "GET", path: path, token: token})
		var got oneoff.OneOff
		decode(t, body, &got)
		if status != http.StatusOK || got.ID != c.ID {
			t.Errorf("GET %s: got status %d, id %q; want 200, %s", path, status, got.ID, c.ID)
		}
	}
	status, body = s.do(t, request{method: "GET", path: "/v1/oneoffs/" + c.Name + "?app=shop", token: token})
	wantError(t, status, body, http.StatusNotFound, "oneoff_not_found")

	status, body = s.do(t, request{method: "POST", path: "/v1/oneoffs/" + c.Name + "/stop?app=" + testApp, token: token})
	var rec oneoff.OneOff
	decode(t, body, &rec)
	if status != http.StatusOK || rec.ID != c.ID || rec.Outcome != oneoff.Stopped {
		t.Errorf("stop by name: got status %d, id %q, outcome %q; want 200, %s, stopped", status, rec.ID, rec.Outcome, c.ID)
	}

	status, body = s.do(t, request{method: "GET", path: "/v1/audit?oneoff=" + url.QueryEscape(c.Name), token: token})
	var audit struct {
		Events []oneoff.AuditEvent `json:"events"`
	}
	decode(t, body, &audit)
	if status != http.StatusOK || len(audit.Events) == 0 {
		t.Fatalf("audit by name: got status %d, %d events; want 200 and some", status, len(audit.Events))
	}
	for _, e := range audit.Events {
		if e.OneOffID != c.ID {
			t.Errorf("audit by name: got an event of %s, want only %s's", e.OneOffID, c.ID)
		}
	}
	// The trail outlives the records: what no record answers to is an id,
	// here of nothing.
	status, body = s.do(t, request{method: "GET", path: "/v1/audit?oneoff=one-off-nope", token: token})
	decode(t, body, &audit)
	if status != http.StatusOK || len(audit.Events) != 0 {
		t.Errorf("audit of nothing: got status %d, %d events; want 200 and none", status, len(audit.Events))
	}
}
