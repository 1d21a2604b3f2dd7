package api_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/store"
)

// newDrainServer is an API server whose drains run, and may reach
// 127.0.0.0/8 only of the internal networks.
func newDrainServer(t *testing.T) (*apiServer, *logs.Drains) {
	t.Helper()
	h := newHarness(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "drains.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	allow, _ := logs.ParseDrainAllow("127.0.0.0/8")
	ds := logs.NewDrains(h.log, nil, allow)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ds.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := api.NewServer(api.Config{Token: token}, api.Deps{OneOffs: h.m, Deploys: h.deploys, Log: h.log, Drains: ds, DrainStore: db})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &apiServer{harness: h, url: ts.URL}, ds
}

func TestServer_setDrains_internal(t *testing.T) {
	s, _ := newDrainServer(t)
	for _, u := range []string{"syslog://169.254.169.254:80", "syslog://[::1]:22", "syslog://10.0.0.5:514", "syslog+tls://[::ffff:192.168.0.1]:6514"} {
		status, body := s.do(t, request{method: "PUT", path: "/v1/apps/" + testApp + "/drains", token: token,
			contentType: "application/json", body: `{"urls": ["syslog://203.0.113.9:514", "` + u + `"]}`})
		e := wantError(t, status, body, http.StatusBadRequest, "drain_address_internal")
		if !strings.Contains(e.Message, `"`+u+`"`) {
			t.Errorf("message %q does not name %s", e.Message, u)
		}
	}
	// Nothing was set.
	status, body := s.do(t, request{method: "GET", path: "/v1/apps/" + testApp + "/drains", token: token})
	var got api.Drains
	decode(t, body, &got)
	if status != http.StatusOK || len(got.URLs) != 0 || len(got.Status) != 0 {
		t.Errorf("got %d %s, want no drains", status, body)
	}
}

func TestServer_drainStatus(t *testing.T) {
	s, ds := newDrainServer(t)
	// A port nothing listens on, on an allowed network: the drain fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "syslog://" + ln.Addr().String()
	ln.Close()
	status, body := s.do(t, request{method: "PUT", path: "/v1/apps/" + testApp + "/drains", token: token,
		contentType: "application/json", body: `{"urls": ["` + closed + `"]}`})
	if status != http.StatusOK {
		t.Fatalf("PUT drains: %d %s", status, body)
	}
	ds.Enqueue([]logs.Line{{Time: time.Now(), App: testApp, Source: "one-off-1", Stream: logs.Stdout, Text: "hello"}})

	var got api.Drains
	deadline := time.Now().Add(waitLimit)
	for {
		_, body = s.do(t, request{method: "GET", path: "/v1/apps/" + testApp + "/drains", token: token})
		decode(t, body, &got)
		if len(got.Status) == 1 && got.Status[0].State == logs.DrainFailing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drain is not failing after %s: %s", waitLimit, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := got.Status[0]
	if st.URL != closed || st.FailingSince == nil || st.LastErrorAt == nil || st.Errors == 0 || st.Buffered != 1 ||
		!strings.Contains(st.LastError, "connect failed") || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status %+v, want %s failing since a time, with the refused connection as last error and the line kept", st, closed)
	}

	_, body = s.do(t, request{method: "GET", path: "/v1/drains", token: token})
	var all api.DrainList
	decode(t, body, &all)
	if len(all.Drains) != 1 || all.Drains[0].App != testApp || all.Drains[0].State != logs.DrainFailing || all.Drains[0].LastError == "" {
		t.Errorf("GET /v1/drains = %s, want %s's failing drain with its last error", body, testApp)
	}
}
