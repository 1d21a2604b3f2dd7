// Package deploy keeps the apps a platform registers and their releases: the
// image, the environment and the Procfile process types that a one-off copies.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// App is an application registered by the platform.
type App struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Release is the current release; nil only while none was registered.
	Release *Release `json:"release,omitempty"`
}

// Release is one deployment of an app: what its one-offs run.
type Release struct {
	App     string `json:"app"`
	Version int    `json:"version"`
	Image   string `json:"image"`
	// Env is what the app's one-offs get. Its values are secrets (a
	// DATABASE_URL with its password): they never leave the daemon, and a
	// release encodes to JSON with only their names, in EnvNames.
	Env map[string]string `json:"-"`
	// EnvNames are the names of Env, sorted: all the API tells of it.
	EnvNames  []string          `json:"env_names,omitempty"`
	Procfile  string            `json:"procfile,omitempty"`
	Processes map[string]string `json:"processes,omitempty"`
	// Cron holds the release's scheduled jobs, in the explicit form
	// {"jobs": [...]}; empty when it has none.
	Cron      json.RawMessage `json:"cron,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// MarshalJSON encodes the release with its env's names, never its values.
func (r Release) MarshalJSON() ([]byte, error) {
	type wire Release // the same fields, without this method
	w := wire(r)
	if r.Env != nil {
		w.EnvNames = slices.Sorted(maps.Keys(r.Env))
	}
	return json.Marshal(w)
}

// Store persists apps and releases.
type Store interface {
	// CreateRelease records r as its app's newest release, creating the app
	// if needed, and returns it with Version and CreatedAt set.
	CreateRelease(ctx context.Context, r Release) (Release, error)
	// App returns an app with its current release, or an ErrNotFound error.
	App(ctx context.Context, name string) (App, error)
	// Apps lists the apps by name, each with its current release.
	Apps(ctx context.Context) ([]App, error)
}

// Spec is what a platform sends to register a release.
type Spec struct {
	Image    string            `json:"image"`
	Env      map[string]string `json:"env,omitempty"`
	Procfile string            `json:"procfile,omitempty"`
	// Cron is the release's cron document (Scalingo's cron.json, or the
	// explicit form); see docs/cron.md.
	Cron json.RawMessage `json:"cron,omitempty"`
	// KeepEnv gives the new release the current release's env, for a spec
	// without one; KeepProcfile its Procfile, KeepCron its cron jobs.
	// Without them, what the spec leaves out the new release does not have.
	KeepEnv      bool `json:"keep_env,omitempty"`
	KeepProcfile bool `json:"keep_procfile,omitempty"`
	KeepCron     bool `json:"keep_cron,omitempty"`
}

// Cron checks the cron jobs that come with a release.
type Cron interface {
	// Check validates app's cron document and returns it as the release
	// keeps it; an empty document means no jobs.
	Check(app string, raw json.RawMessage) (json.RawMessage, error)
}

// ImageCheck reports why the engine cannot run image: it does not have it
// and cannot pull it. nil means it can.
type ImageCheck func(ctx context.Context, image string) error

// Service registers releases and answers which release an app runs.
type Service struct {
	store Store
	cron  Cron

	mu      sync.Mutex
	subs    map[int]func(Release)
	nextSub int
	// CheckImage, when set, is asked about each release's image before
	// the release is recorded: a deploy of an image that cannot run fails
	// then, with the reason, rather than the app's first one-off.
	CheckImage ImageCheck
}

// Option tunes a Service.
type Option func(*Service)

// WithCron has the Service accept cron jobs with a release, checked by c.
// Without it, a release that brings cron jobs is refused.
func WithCron(c Cron) Option { return func(s *Service) { s.cron = c } }

// NewService returns a Service backed by store.
func NewService(store Store, opts ...Option) *Service {
	s := &Service{store: store}
	for _, o := range opts {
		o(s)
	}
	return s
}

var (
	appName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// image references: name[:tag][@digest], loosely; the engine has the final word.
	imageRef = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,511}$`)
)

// ValidateAppName reports whether name can name an app.
func ValidateAppName(name string) error {
	if !appName.MatchString(name) {
		return errdefs.Invalid("invalid_app_name",
			"app name %q is invalid: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit", name)
	}
	return nil
}

// MaxEnvVar bounds one variable, KEY=VALUE: the kernel refuses to start a
// process with a longer environment string (MAX_ARG_STRLEN).
const MaxEnvVar = 128 << 10

// ValidateEnv checks that every key of env is a POSIX environment variable
// name and every value one that a process can be given; the error names
// the first culprit in sorted order.
func ValidateEnv(env map[string]string) error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := env[k]; {
		case len(k) > 255 || !envName.MatchString(k):
			return errdefs.Invalid("invalid_env_name",
				"environment variable name %q is invalid: use up to 255 letters, digits and underscores, not starting with a digit", truncate(k, 64))
		case strings.IndexByte(v, 0) >= 0:
			return errdefs.Invalid("invalid_env_value",
				"environment variable %q holds a NUL byte, which no process environment can carry: remove it", k)
		case len(k)+1+len(v) > MaxEnvVar:
			return errdefs.Invalid("invalid_env_value",
				"environment variable %q is %d bytes long, over the %d bytes a process environment string may have: pass large values as a file (--file)", k, len(k)+1+len(v), MaxEnvVar)
		}
	}
	return nil
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Deploy validates spec and records it as app's new current release.
func (s *Service) Deploy(ctx context.Context, app string, spec Spec) (Release, error) {
	if err := ValidateAppName(app); err != nil {
		return Release{}, err
	}
	if spec.Image == "" {
		return Release{}, errdefs.Invalid("image_required", "a release needs an image: pass one such as \"registry.example.com/my-app:v42\"")
	}
	if !imageRef.MatchString(spec.Image) {
		return Release{}, errdefs.Invalid("invalid_image", "image reference %q is invalid", spec.Image)
	}
	if spec.KeepEnv && len(spec.Env) > 0 || spec.KeepProcfile && spec.Procfile != "" || spec.KeepCron && len(spec.Cron) > 0 {
		return Release{}, errdefs.Invalid("keep_and_give", "a deploy keeps the current release's env, Procfile or cron jobs, or gives new ones, not both")
	}
	if spec.KeepEnv || spec.KeepProcfile || spec.KeepCron {
		cur, err := s.store.App(ctx, app)
		switch {
		case err == nil && cur.Release != nil:
			if spec.KeepEnv {
				spec.Env = cur.Release.Env
			}
			if spec.KeepProcfile {
				spec.Procfile = cur.Release.Procfile
			}
			if spec.KeepCron {
				spec.Cron = cur.Release.Cron
			}
		case err != nil && !errors.Is(err, errdefs.ErrNotFound):
			return Release{}, fmt.Errorf("deploy %q: read the current release: %w", app, err)
		}
	}
	if err := ValidateEnv(spec.Env); err != nil {
		return Release{}, err
	}
	procs, err := ParseProcfile(spec.Procfile)
	if err != nil {
		return Release{}, err
	}
	cron, err := s.checkCron(app, spec.Cron)
	if err != nil {
		return Release{}, err
	}
	if s.CheckImage != nil {
		if err := s.CheckImage(ctx, spec.Image); err != nil {
			return Release{}, err
		}
	}
	r, err := s.store.CreateRelease(ctx, Release{
		App: app, Image: spec.Image, Env: spec.Env, Procfile: spec.Procfile, Processes: procs, Cron: cron,
	})
	if err != nil {
		return Release{}, fmt.Errorf("deploy %q: %w", app, err)
	}
	s.mu.Lock()
	for _, fn := range s.subs {
		fn(r)
	}
	s.mu.Unlock()
	return r, nil
}

// Subscribe has fn called with each release once it is registered, until
// the returned function is called. fn must not block.
func (s *Service) Subscribe(fn func(Release)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = map[int]func(Release){}
	}
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// checkCron validates a release's cron document, if any.
func (s *Service) checkCron(app string, raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if s.cron == nil {
		return nil, errdefs.Invalid("cron_unsupported", "this daemon does not run cron jobs: deploy without \"cron\"")
	}
	return s.cron.Check(app, raw)
}

// App returns an app and its current release.
func (s *Service) App(ctx context.Context, name string) (App, error) {
	if err := ValidateAppName(name); err != nil {
		return App{}, err
	}
	return s.store.App(ctx, name)
}

// Apps lists every app.
func (s *Service) Apps(ctx context.Context) ([]App, error) {
	return s.store.Apps(ctx)
}

// Current returns the release an app's one-offs run now.
func (s *Service) Current(ctx context.Context, app string) (Release, error) {
	a, err := s.App(ctx, app)
	if err != nil {
		return Release{}, err
	}
	if a.Release == nil {
		return Release{}, errdefs.Conflict("no_release", "app %q has no release yet: deploy one first", app)
	}
	return *a.Release, nil
}
