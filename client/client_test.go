package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/errdefs"
)

func TestClient_WithVersionCheck(t *testing.T) {
	for _, tt := range []struct {
		name   string
		header string
		want   []string
	}{
		{"same version", "1", nil},
		{"no header", "", nil},
		{"another version, told once", "2", []string{"2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set(apitypes.VersionHeader, tt.header)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"apps": []}`))
			}))
			defer srv.Close()
			var got []string
			c := client.New(srv.URL, "token", nil).WithVersionCheck(func(v string) { got = append(got, v) })
			for i := 0; i < 3; i++ {
				if _, err := c.Apps(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Errorf("told %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClient_WithRequester(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get(apitypes.RequesterHeader)
		w.Write([]byte(`{"apps": []}`))
	}))
	defer srv.Close()
	if _, err := client.New(srv.URL, "token", nil).WithRequester("alice@example.com").Apps(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got != "alice@example.com" {
		t.Errorf("requester header = %q, want alice@example.com", got)
	}
}

func TestError_Is(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error": {"code": "oneoff_quota", "message": "app web already runs 2 one-offs"}}`))
	}))
	defer srv.Close()
	_, err := client.New(srv.URL, "token", nil).Apps(context.Background())
	if !errors.Is(err, errdefs.ErrQuota) {
		t.Fatalf("got %v, want an errdefs.ErrQuota error", err)
	}
	if errors.Is(err, errdefs.ErrConflict) {
		t.Error("a 429 matches errdefs.ErrConflict too")
	}
	if got, want := err.Error(), "app web already runs 2 one-offs"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
