package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestServer_quota(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	path := "/v1/apps/" + testApp + "/oneoffs"
	var names []string
	for range oneoff.DefaultMaxPerApp {
		status, body := s.do(t, request{method: "POST", path: path, token: token, body: `{"command":"bash"}`})
		if status != http.StatusCreated {
			t.Fatalf("create: got status %d (body %s)", status, body)
		}
		var o oneoff.OneOff
		decode(t, body, &o)
		names = append(names, o.Name)
	}
	status, body := s.do(t, request{method: "POST", path: path, token: token, body: `{"command":"bash"}`})
	d := wantError(t, status, body, http.StatusTooManyRequests, "oneoff_quota_app")
	if want := fmt.Sprintf("app %s already runs %d one-offs", testApp, oneoff.DefaultMaxPerApp); !strings.Contains(d.Message, want) {
		t.Errorf("got message %q, want it to say %q", d.Message, want)
	}
	var named int
	for _, n := range names {
		if strings.Contains(d.Message, n) {
			named++
		}
	}
	if named == 0 {
		t.Errorf("got message %q, want it to name what runs", d.Message)
	}
}

func TestServer_listLimits(t *testing.T) {
	s := newAPIServer(t, api.Config{Token: token})
	ctx := context.Background()
	const apps = api.DefaultListLimit + 1 // and testApp
	for i := range apps {
		if _, err := s.deploys.Deploy(ctx, fmt.Sprintf("app-%03d", i), deploy.Spec{Image: "img"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if status, body := s.do(t, request{method: "POST", path: "/v1/apps/" + testApp + "/oneoffs", token: token,
			body: `{"command":"bash"}`}); status != http.StatusCreated {
			t.Fatalf("create: got status %d (body %s)", status, body)
		}
	}
	count := func(t *testing.T, path, key string) int {
		t.Helper()
		status, body := s.do(t, request{method: "GET", path: path, token: token})
		if status != http.StatusOK {
			t.Fatalf("GET %s: got status %d (body %s)", path, status, body)
		}
		var got map[string][]any
		decode(t, body, &got)
		return len(got[key])
	}
	for _, route := range []struct{ path, key string }{{"/v1/apps", "apps"}, {"/v1/oneoffs", "oneoffs"}, {"/v1/audit", "events"}} {
		t.Run(route.path, func(t *testing.T) {
			for _, bad := range []string{"0", "-1", "ten", fmt.Sprint(api.MaxListLimit + 1)} {
				status, body := s.do(t, request{method: "GET", path: route.path + "?limit=" + bad, token: token})
				d := wantError(t, status, body, http.StatusBadRequest, "invalid_limit")
				if !strings.Contains(d.Message, fmt.Sprint(api.MaxListLimit)) {
					t.Errorf("limit=%s: got message %q, want it to say the maximum", bad, d.Message)
				}
			}
			if got := count(t, route.path+"?limit=2", route.key); got != 2 {
				t.Errorf("limit=2: got %d items, want 2", got)
			}
		})
	}
	if got := count(t, "/v1/apps", "apps"); got != api.DefaultListLimit {
		t.Errorf("/v1/apps with no limit: got %d apps, want the default %d", got, api.DefaultListLimit)
	}
	if got := count(t, fmt.Sprintf("/v1/apps?limit=%d", api.MaxListLimit), "apps"); got != apps+1 {
		t.Errorf("/v1/apps?limit=%d: got %d apps, want all %d", api.MaxListLimit, got, apps+1)
	}
}
