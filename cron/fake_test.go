package cron

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// fakeStarter keeps one-offs in memory; a test ends them with finish.
type fakeStarter struct {
	mu      sync.Mutex
	n       int
	oneoffs map[string]oneoff.OneOff
	done    map[string]chan struct{}
	creates []oneoff.Request
	stops   []string
	fail    error
	created chan string
}

func newFakeStarter() *fakeStarter {
	return &fakeStarter{oneoffs: map[string]oneoff.OneOff{}, done: map[string]chan struct{}{}, created: make(chan string, 100)}
}

func (f *fakeStarter) Create(_ context.Context, app string, req oneoff.Request) (oneoff.OneOff, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, req)
	if f.fail != nil {
		return oneoff.OneOff{}, "", f.fail
	}
	f.n++
	o := oneoff.OneOff{ID: fmt.Sprintf("id%d", f.n), Name: fmt.Sprintf("%s-%d", req.NamePrefix, 1000+f.n), App: app,
		Mode: oneoff.Detached, Requester: req.Requester, State: oneoff.Running}
	f.oneoffs[o.ID] = o
	f.done[o.ID] = make(chan struct{})
	f.created <- o.ID
	return o, "", nil
}

func (f *fakeStarter) Get(_ context.Context, id string) (oneoff.OneOff, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.oneoffs[id]
	if !ok {
		return oneoff.OneOff{}, errdefs.NotFound("oneoff_not_found", "no one-off %s", id)
	}
	return o, nil
}

func (f *fakeStarter) Stop(_ context.Context, id, _ string) (oneoff.OneOff, error) {
	f.mu.Lock()
	f.stops = append(f.stops, id)
	f.mu.Unlock()
	f.end(id, oneoff.Stopped, nil)
	return f.Get(context.Background(), id)
}

func (f *fakeStarter) Done(id string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.done[id]; ok {
		return c
	}
	c := make(chan struct{})
	close(c)
	return c
}

// finish ends one-off id with exit status code.
func (f *fakeStarter) finish(id string, code int) { f.end(id, oneoff.Exited, &code) }

func (f *fakeStarter) end(id string, outcome oneoff.Outcome, code *int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.oneoffs[id]
	if o.State == oneoff.Finished {
		return
	}
	o.State, o.Outcome, o.ExitCode = oneoff.Finished, outcome, code
	f.oneoffs[id] = o
	close(f.done[id])
}

func (f *fakeStarter) requests() []oneoff.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.creates)
}

// fakeReleases keeps apps in memory.
type fakeReleases struct {
	mu   sync.Mutex
	apps map[string]deploy.App
}

func (f *fakeReleases) set(rel deploy.Release) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.apps == nil {
		f.apps = map[string]deploy.App{}
	}
	f.apps[rel.App] = deploy.App{Name: rel.App, CreatedAt: rel.CreatedAt, Release: &rel}
}

func (f *fakeReleases) Apps(context.Context) ([]deploy.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []deploy.App
	for _, a := range f.apps {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeReleases) App(_ context.Context, name string) (deploy.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.apps[name]
	if !ok {
		return deploy.App{}, errdefs.NotFound("app_not_found", "app %q does not exist", name)
	}
	return a, nil
}

// memStore is a Store in memory.
type memStore struct {
	mu     sync.Mutex
	states map[key]State
	runs   []Run
}

func newMemStore() *memStore { return &memStore{states: map[key]State{}} }

func (m *memStore) CronStates(context.Context) ([]State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []State
	for _, st := range m.states {
		out = append(out, st)
	}
	return out, nil
}

func (m *memStore) AddCronRun(_ context.Context, run Run, st State) (Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	run.Seq = int64(len(m.runs) + 1)
	m.runs = append(m.runs, run)
	m.states[key{st.App, st.Job}] = st
	return run, nil
}

func (m *memStore) FinishCronRun(_ context.Context, run Run, st State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[run.Seq-1] = run
	m.states[key{st.App, st.Job}] = st
	return nil
}

func (m *memStore) CronRuns(_ context.Context, app, job string, limit int) ([]Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Run{}
	for i := len(m.runs) - 1; i >= 0 && len(out) < limit; i-- {
		if r := m.runs[i]; r.App == app && r.Job == job {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) UnfinishedCronRuns(context.Context) ([]Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Run
	for _, r := range m.runs {
		if r.Status == Started && r.FinishedAt == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) all() []Run {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.runs)
}
