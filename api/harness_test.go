package api_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/internal/fakeruntime"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

// waitLimit bounds every wait for something that should happen at once.
const waitLimit = 5 * time.Second

// testApp is the app deployed by newHarness.
const testApp = "web"

// harness is a Manager on a fake runtime and a real store, with app "web"
// deployed.
type harness struct {
	rt      *fakeruntime.Runtime
	m       *oneoff.Manager
	deploys *deploy.Service
	log     *slog.Logger
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	deploys := deploy.NewService(db)
	if _, err := deploys.Deploy(context.Background(), testApp, deploy.Spec{Image: "registry.example.com/web:v1"}); err != nil {
		t.Fatal(err)
	}
	rt := fakeruntime.New()
	log := slog.New(slog.DiscardHandler)
	m := oneoff.NewManager(oneoff.Config{Instance: "test"}, rt, db, deploys, &fakeruntime.Logs{}, log)
	return &harness{rt: rt, m: m, deploys: deploys, log: log}
}
