package deploy_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// memStore is an in-memory deploy.Store.
type memStore struct {
	mu       sync.Mutex
	apps     map[string]deploy.App
	releases map[string][]deploy.Release
	calls    int // CreateRelease calls
}

func newMemStore() *memStore {
	return &memStore{apps: map[string]deploy.App{}, releases: map[string][]deploy.Release{}}
}

func (s *memStore) CreateRelease(_ context.Context, r deploy.Release) (deploy.Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	now := time.Now().UTC()
	if _, ok := s.apps[r.App]; !ok {
		s.apps[r.App] = deploy.App{Name: r.App, CreatedAt: now}
	}
	r.Version = len(s.releases[r.App]) + 1
	r.CreatedAt = now
	if r.Processes == nil {
		r.Processes = map[string]string{}
	}
	s.releases[r.App] = append(s.releases[r.App], r)
	return r, nil
}

func (s *memStore) App(_ context.Context, name string) (deploy.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[name]
	if !ok {
		return deploy.App{}, errdefs.NotFound("app_not_found", "app %q does not exist", name)
	}
	if rs := s.releases[name]; len(rs) > 0 {
		r := rs[len(rs)-1]
		a.Release = &r
	}
	return a, nil
}

func (s *memStore) Apps(context.Context) ([]deploy.App, error) {
	return nil, errors.New("not used")
}

func TestValidateAppName(t *testing.T) {
	tests := []struct {
		name    string
		app     string
		wantErr bool
	}{
		{name: "simple", app: "web"},
		{name: "single letter", app: "a"},
		{name: "dashes", app: "my-app-2"},
		{name: "starts with a digit", app: "0day"},
		{name: "63 characters", app: strings.Repeat("a", 63)},
		{name: "empty", app: "", wantErr: true},
		{name: "64 characters", app: strings.Repeat("a", 64), wantErr: true},
		{name: "starts with a dash", app: "-app", wantErr: true},
		{name: "uppercase", app: "My-App", wantErr: true},
		{name: "underscore", app: "my_app", wantErr: true},
		{name: "dot", app: "my.app", wantErr: true},
		{name: "slash", app: "my/app", wantErr: true},
		{name: "space", app: "my app", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := deploy.ValidateAppName(tt.app)
			if got, want := err != nil, tt.wantErr; got != want {
				t.Fatalf("ValidateAppName(%q) = %v: got error %t, want %t", tt.app, err, got, want)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("ValidateAppName(%q) = %v: got not ErrInvalid, want ErrInvalid", tt.app, err)
			}
			if e, ok := errdefs.As(err); !ok || e.Code != "invalid_app_name" {
				t.Errorf("ValidateAppName(%q) = %v: got code %v, want invalid_app_name", tt.app, err, e)
			}
		})
	}
}

func TestValidateEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		// wantBad is the name the error must name.
		wantBad string
		// wantCode is the error's code, invalid_env_name when empty.
		wantCode string
	}{
		{name: "nil", env: nil},
		{name: "empty", env: map[string]string{}},
		{name: "good names", env: map[string]string{"PATH": "/bin", "_PRIVATE": "", "lower_case1": "x", "A": "="}},
		{name: "empty name", env: map[string]string{"": "x"}, wantErr: true, wantBad: ""},
		{name: "leading digit", env: map[string]string{"1PASSWORD": "x"}, wantErr: true, wantBad: "1PASSWORD"},
		{name: "dash", env: map[string]string{"GOOD": "1", "BAD-NAME": "x"}, wantErr: true, wantBad: "BAD-NAME"},
		{name: "equals sign", env: map[string]string{"A=B": "x"}, wantErr: true, wantBad: "A=B"},
		{name: "space", env: map[string]string{"A B": "x"}, wantErr: true, wantBad: "A B"},
		{name: "first culprit in sorted order", env: map[string]string{"Z-Z": "", "OK": "", "1A": "", "B.B": ""}, wantErr: true, wantBad: "1A"},
		{name: "name too long", env: map[string]string{strings.Repeat("A", 256): ""}, wantErr: true, wantBad: strings.Repeat("A", 64) + "..."},
		{name: "NUL in a value", env: map[string]string{"TOKEN": "a\x00b"}, wantErr: true, wantBad: "TOKEN", wantCode: "invalid_env_value"},
		{name: "value too long", env: map[string]string{"BLOB": strings.Repeat("x", deploy.MaxEnvVar)}, wantErr: true, wantBad: "BLOB", wantCode: "invalid_env_value"},
		{name: "value just short enough", env: map[string]string{"BLOB": strings.Repeat("x", deploy.MaxEnvVar-5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := deploy.ValidateEnv(tt.env)
			if got, want := err != nil, tt.wantErr; got != want {
				t.Fatalf("ValidateEnv = %v: got error %t, want %t", err, got, want)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("ValidateEnv = %v: got not ErrInvalid, want ErrInvalid", err)
			}
			wantCode := tt.wantCode
			if wantCode == "" {
				wantCode = "invalid_env_name"
			}
			if e, ok := errdefs.As(err); !ok || e.Code != wantCode {
				t.Errorf("ValidateEnv: got code %v, want %s", e, wantCode)
			}
			if want := `"` + tt.wantBad + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("ValidateEnv error: got %q, want it to name %s", err.Error(), want)
			}
		})
	}
}

func TestService_Deploy(t *testing.T) {
	invalid := []struct {
		name     string
		app      string
		spec     deploy.Spec
		wantCode string
	}{
		{name: "bad app name", app: "Bad_App", spec: deploy.Spec{Image: "alpine:3"}, wantCode: "invalid_app_name"},
		{name: "missing image", app: "web", spec: deploy.Spec{}, wantCode: "image_required"},
		{name: "bad image", app: "web", spec: deploy.Spec{Image: "-alpine with spaces"}, wantCode: "invalid_image"},
		{name: "bad env name", app: "web", spec: deploy.Spec{Image: "alpine:3", Env: map[string]string{"BAD-NAME": "1"}}, wantCode: "invalid_env_name"},
		{name: "bad Procfile", app: "web", spec: deploy.Spec{Image: "alpine:3", Procfile: "web ./server"}, wantCode: "invalid_procfile"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			svc := deploy.NewService(store)
			_, err := svc.Deploy(context.Background(), tt.app, tt.spec)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Deploy(%q, %+v) = %v: got not ErrInvalid, want ErrInvalid", tt.app, tt.spec, err)
			}
			if e, ok := errdefs.As(err); !ok || e.Code != tt.wantCode {
				t.Errorf("Deploy(%q, %+v) = %v: got code %v, want %s", tt.app, tt.spec, err, e, tt.wantCode)
			}
			if store.calls != 0 {
				t.Errorf("store.CreateRelease calls: got %d, want 0", store.calls)
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		store := newMemStore()
		svc := deploy.NewService(store)
		spec := deploy.Spec{
			Image:    "registry.example.com/my-app:v42",
			Env:      map[string]string{"DATABASE_URL": "postgres://db/app"},
			Procfile: "web: ./server\nworker: ./worker\n",
		}
		got, err := svc.Deploy(context.Background(), "my-app", spec)
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if got.App != "my-app" || got.Version != 1 || got.Image != spec.Image || got.Procfile != spec.Procfile {
			t.Errorf("Deploy: got %+v, want app my-app, version 1, image %q and the Procfile", got, spec.Image)
		}
		if !maps.Equal(got.Env, spec.Env) {
			t.Errorf("Env: got %v, want %v", got.Env, spec.Env)
		}
		if want := map[string]string{"web": "./server", "worker": "./worker"}; !maps.Equal(got.Processes, want) {
			t.Errorf("Processes: got %v, want %v", got.Processes, want)
		}

		second, err := svc.Deploy(context.Background(), "my-app", deploy.Spec{Image: "alpine:3"})
		if err != nil {
			t.Fatalf("second Deploy: %v", err)
		}
		if got, want := second.Version, 2; got != want {
			t.Errorf("second Deploy version: got %d, want %d", got, want)
		}
		cur, err := svc.Current(context.Background(), "my-app")
		if err != nil {
			t.Fatalf("Current: %v", err)
		}
		if got, want := cur.Version, 2; got != want {
			t.Errorf("Current version: got %d, want %d", got, want)
		}
	})
}

func TestService_Current(t *testing.T) {
	t.Run("unknown app", func(t *testing.T) {
		svc := deploy.NewService(newMemStore())
		_, err := svc.Current(context.Background(), "ghost")
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Current: got %v, want ErrNotFound", err)
		}
	})
	t.Run("bad app name", func(t *testing.T) {
		svc := deploy.NewService(newMemStore())
		_, err := svc.Current(context.Background(), "Ghost!")
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Current: got %v, want ErrInvalid", err)
		}
	})
	t.Run("app without a release", func(t *testing.T) {
		store := newMemStore()
		store.apps["empty"] = deploy.App{Name: "empty"}
		svc := deploy.NewService(store)
		_, err := svc.Current(context.Background(), "empty")
		if !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("Current: got %v, want ErrConflict", err)
		}
	})
}
