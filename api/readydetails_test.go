package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/oneoffd/oneoffd/api"
)

func TestServer_readyzDetails(t *testing.T) {
	note := []string{"disk quota: unsupported by storage driver fuse-overlayfs"}
	for _, tt := range []struct {
		name       string
		check      error
		details    func() []string
		wantStatus int
		want       []string
	}{
		{"ready, with a note", nil, func() []string { return note }, http.StatusOK, note},
		{"not ready, with a note", errors.New("down"), func() []string { return note }, http.StatusServiceUnavailable, note},
		{"no notes", nil, func() []string { return nil }, http.StatusOK, nil},
		{"no details source", nil, nil, http.StatusOK, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := api.NewServer(api.Config{Token: "token"}, api.Deps{
				Log:          slog.New(slog.DiscardHandler),
				Ready:        map[string]api.Checker{"engine": func(context.Context) error { return tt.check }},
				ReadyDetails: tt.details,
			})
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			var body map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			raw, ok := body["details"]
			if tt.want == nil {
				if ok {
					t.Errorf("details = %s, want none", raw)
				}
				return
			}
			var got []string
			if err := json.Unmarshal(raw, &got); err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("details = %s, want %q", raw, tt.want)
			}
		})
	}
}
