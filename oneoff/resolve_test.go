package oneoff_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestManager_Resolve(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, oneoff.Config{})
	if _, err := h.deploys.Deploy(ctx, "shop", deploy.Spec{Image: "registry.example.com/shop:v1"}); err != nil {
		t.Fatal(err)
	}
	insert := func(id, app, name string) {
		t.Helper()
		rec := oneoff.OneOff{ID: id, Name: name, App: app, Release: 1, Image: "img", Command: []string{"true"},
			Mode: oneoff.Detached, State: oneoff.Finished, Outcome: oneoff.Exited, CreatedAt: time.Now().UTC()}
		if err := h.db.CreateOneOff(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	insert("id-web-1", testApp, "one-off-1111")
	insert("id-shop-1", "shop", "one-off-1111") // the same name, in another app
	insert("id-shop-2", "shop", "one-off-2222")

	tests := []struct {
		name, app, ref string
		wantID         string
		wantErr        error
		wantInMsg      []string
	}{
		{name: "an id", ref: "id-web-1", wantID: "id-web-1"},
		{name: "an id with its app", app: testApp, ref: "id-web-1", wantID: "id-web-1"},
		{name: "a name one app has", ref: "one-off-2222", wantID: "id-shop-2"},
		{name: "a name with its app", app: "shop", ref: "one-off-1111", wantID: "id-shop-1"},
		{name: "a name two apps have", ref: "one-off-1111", wantErr: errdefs.ErrInvalid,
			wantInMsg: []string{"2 one-offs", "app web (id id-web-1)", "app shop (id id-shop-1)", "--app"}},
		{name: "an id of another app", app: testApp, ref: "id-shop-2", wantErr: errdefs.ErrNotFound, wantInMsg: []string{"app web has no one-off"}},
		{name: "a name of another app", app: testApp, ref: "one-off-2222", wantErr: errdefs.ErrNotFound},
		{name: "nothing", ref: "one-off-9999", wantErr: errdefs.ErrNotFound, wantInMsg: []string{"id or name"}},
		{name: "empty", ref: "", wantErr: errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := h.m.Resolve(ctx, tt.app, tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v (%+v), want a %v error", err, o, tt.wantErr)
				}
				for _, s := range tt.wantInMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.ID != tt.wantID {
				t.Errorf("got %s, want %s", o.ID, tt.wantID)
			}
		})
	}
}
