package deploy_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

func TestService_Deploy_keep(t *testing.T) {
	ctx := context.Background()
	first := deploy.Spec{Image: "app:v1", Env: map[string]string{"A": "1"}, Procfile: "worker: ./worker\n"}
	tests := []struct {
		name         string
		spec         deploy.Spec
		wantEnv      map[string]string
		wantProcfile string
		wantCode     string
	}{
		{name: "both kept", spec: deploy.Spec{Image: "app:v2", KeepEnv: true, KeepProcfile: true},
			wantEnv: first.Env, wantProcfile: first.Procfile},
		{name: "env given, Procfile kept", spec: deploy.Spec{Image: "app:v2", Env: map[string]string{"B": "2"}, KeepProcfile: true},
			wantEnv: map[string]string{"B": "2"}, wantProcfile: first.Procfile},
		{name: "nothing kept: replaced", spec: deploy.Spec{Image: "app:v2"}, wantEnv: nil, wantProcfile: ""},
		{name: "kept and given", spec: deploy.Spec{Image: "app:v2", Env: map[string]string{"B": "2"}, KeepEnv: true}, wantCode: "keep_and_give"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := deploy.NewService(newMemStore())
			if _, err := svc.Deploy(ctx, "web", first); err != nil {
				t.Fatal(err)
			}
			got, err := svc.Deploy(ctx, "web", tt.spec)
			if tt.wantCode != "" {
				if e, ok := errdefs.As(err); !ok || e.Code != tt.wantCode {
					t.Fatalf("got %v, want a %s error", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Image != tt.spec.Image || !maps.Equal(got.Env, tt.wantEnv) || got.Procfile != tt.wantProcfile {
				t.Errorf("got image %q, env %v, Procfile %q; want %q, %v, %q", got.Image, got.Env, got.Procfile, tt.spec.Image, tt.wantEnv, tt.wantProcfile)
			}
		})
	}
	t.Run("first release: nothing to keep", func(t *testing.T) {
		svc := deploy.NewService(newMemStore())
		got, err := svc.Deploy(ctx, "web", deploy.Spec{Image: "app:v1", KeepEnv: true, KeepProcfile: true})
		if err != nil || len(got.Env) != 0 || got.Procfile != "" {
			t.Errorf("got %+v, %v; want a release without env nor Procfile", got, err)
		}
	})
}

func TestService_Deploy_imageCheck(t *testing.T) {
	store := newMemStore()
	svc := deploy.NewService(store)
	svc.CheckImage = func(_ context.Context, image string) error {
		return errdefs.Unavailable("image_unavailable", errors.New("dial tcp: no route"), "the engine does not have image %s and cannot pull it: registry docker.io does not answer", image)
	}
	_, err := svc.Deploy(context.Background(), "web", deploy.Spec{Image: "nope:v1"})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "cannot pull it") {
		t.Fatalf("got %v, want the image check's error", err)
	}
	if store.calls != 0 {
		t.Errorf("a release was recorded for an image that cannot run")
	}
}
