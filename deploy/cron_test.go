package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// checker accepts documents without "bad" and returns them compacted.
type checker struct{}

func (checker) Check(app string, raw json.RawMessage) (json.RawMessage, error) {
	if string(raw) == `{"bad": true}` {
		return nil, errdefs.Invalid("invalid_cron", "cron job 1: bad")
	}
	return json.RawMessage(`{"jobs":[]}`), nil
}

func TestService_Deploy_cron(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	svc := deploy.NewService(store, deploy.WithCron(checker{}))
	var seen []int
	unsubscribe := svc.Subscribe(func(r deploy.Release) { seen = append(seen, r.Version) })

	if _, err := svc.Deploy(ctx, "web", deploy.Spec{Image: "web:1", Cron: json.RawMessage(`{"bad": true}`)}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Deploy with bad cron jobs: got %v, want invalid", err)
	}
	if _, err := svc.App(ctx, "web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("App after a refused release: got %v, want not found: nothing registered", err)
	}
	rel, err := svc.Deploy(ctx, "web", deploy.Spec{Image: "web:1", Cron: json.RawMessage(` {"jobs": [ ] } `)})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if got := string(rel.Cron); got != `{"jobs":[]}` {
		t.Errorf("release cron: got %s, want the checker's form", got)
	}
	rel, err = svc.Deploy(ctx, "web", deploy.Spec{Image: "web:2"})
	if err != nil || rel.Cron != nil {
		t.Fatalf("Deploy without cron: got %s, %v, want no cron jobs", rel.Cron, err)
	}
	unsubscribe()
	if _, err := svc.Deploy(ctx, "web", deploy.Spec{Image: "web:3"}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
		t.Errorf("subscriber saw releases %v, want 1 and 2", seen)
	}

	noCron := deploy.NewService(newMemStore())
	if _, err := noCron.Deploy(ctx, "web", deploy.Spec{Image: "web:1", Cron: json.RawMessage(`{"jobs": []}`)}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Deploy with cron jobs to a service without a checker: got %v, want invalid", err)
	}
}
