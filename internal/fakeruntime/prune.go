package fakeruntime

import "context"

// Prune does nothing: the fake makes nothing that outlives a container.
func (r *Runtime) Prune(context.Context) error { return nil }
