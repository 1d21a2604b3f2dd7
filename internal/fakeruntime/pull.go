package fakeruntime

import (
	"context"
	"sync"

	"github.com/oneoffd/oneoffd/oneoff"
)

// images says which images are missing from the fake engine; all others
// are there.
type images struct {
	mu      sync.Mutex
	missing map[string]bool
}

// Missing makes image ref absent, so that a one-off of it needs a pull.
func (r *Runtime) Missing(ref string) {
	r.images.mu.Lock()
	defer r.images.mu.Unlock()
	if r.images.missing == nil {
		r.images.missing = map[string]bool{}
	}
	r.images.missing[ref] = true
}

// HasImage reports whether ref is there.
func (r *Runtime) HasImage(_ context.Context, ref string) (bool, error) {
	r.images.mu.Lock()
	defer r.images.mu.Unlock()
	return !r.images.missing[ref], nil
}

// Pull runs PullHook, if set, and makes ref present unless it fails.
func (r *Runtime) Pull(ctx context.Context, ref string, progress func(oneoff.PullProgress)) error {
	r.mu.Lock()
	r.record("pull %s", ref)
	hook := r.PullHook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, ref, progress); err != nil {
			return err
		}
	}
	r.images.mu.Lock()
	defer r.images.mu.Unlock()
	delete(r.images.missing, ref)
	return nil
}

// CanPull runs PullHook, if set, without making ref present.
func (r *Runtime) CanPull(ctx context.Context, ref string) error {
	r.mu.Lock()
	r.record("check %s", ref)
	hook := r.PullHook
	r.mu.Unlock()
	if hook != nil {
		return hook(ctx, ref, nil)
	}
	return nil
}
