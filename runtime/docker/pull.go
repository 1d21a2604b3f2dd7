package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

var _ oneoff.Puller = (*Runtime)(nil)

// pullProgressEvery is how often, at most, Pull reports progress.
const pullProgressEvery = 250 * time.Millisecond

// SetRegistryAuth sets the credentials the engine is given to pull from
// each registry, keyed as in a docker config.json: "host:port", a URL such
// as "https://host/v1/", or "https://index.docker.io/v1/" for Docker Hub.
// It replaces those set before.
func (d *Runtime) SetRegistryAuth(auths map[string]registry.AuthConfig) {
	byHost := make(map[string]registry.AuthConfig, len(auths))
	keys := make([]string, 0, len(auths))
	for k := range auths {
		keys = append(keys, k)
	}
	// Keys that name the same host: the longest, most specific, wins,
	// the same way each time.
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		byHost[registryHost(k)] = auths[k]
	}
	d.authMu.Lock()
	d.auths = byHost
	d.authMu.Unlock()
}

// registryAuth returns the credentials set for a registry host.
func (d *Runtime) registryAuth(host string) (registry.AuthConfig, bool) {
	d.authMu.Lock()
	defer d.authMu.Unlock()
	ac, ok := d.auths[registryHost(host)]
	return ac, ok
}

// registryHost turns a config.json key or a reference's domain into a bare
// host[:port], with Docker Hub's many names folded into docker.io.
func registryHost(key string) string {
	h := strings.ToLower(key)
	h = strings.TrimPrefix(h, "https://")
	h = strings.TrimPrefix(h, "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return h
}

// dockerConfig is the part of a docker config.json that holds credentials.
type dockerConfig struct {
	Auths       map[string]dockerConfigAuth `json:"auths"`
	CredsStore  string                      `json:"credsStore"`
	CredHelpers map[string]string           `json:"credHelpers"`
}

type dockerConfigAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// LoadDockerConfig reads the registry credentials of a docker config.json:
// its "auths", each with "auth" (base64 of user:password) or "username"
// and "password". Credentials kept by a credential helper (credsStore,
// credHelpers) are not read: a registry that has only those is an error.
func LoadDockerConfig(path string) (map[string]registry.AuthConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read registry config: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("registry config %s is not a docker config.json: %w", path, err)
	}
	helperOnly := func(host string) error {
		helper := cfg.CredHelpers[host]
		if helper == "" {
			helper = cfg.CredsStore
		}
		return fmt.Errorf("registry config %s keeps the credentials for %s in the credential helper %q, which oneoffd does not read: give them inline, as \"auth\" (base64 of user:password) or \"username\" and \"password\" under \"auths\"", path, host, helper)
	}
	auths := make(map[string]registry.AuthConfig, len(cfg.Auths))
	for key, a := range cfg.Auths {
		ac := registry.AuthConfig{
			Username:      a.Username,
			Password:      a.Password,
			IdentityToken: a.IdentityToken,
			RegistryToken: a.RegistryToken,
			ServerAddress: key,
		}
		if a.Auth != "" {
			// The engine reads only username and password, so the pair is
			// decoded here, as the docker CLI does.
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
			if err != nil {
				return nil, fmt.Errorf("registry config %s: the auth of %s is not base64: %w", path, key, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok || user == "" {
				return nil, fmt.Errorf("registry config %s: the auth of %s is not base64 of user:password", path, key)
			}
			ac.Username, ac.Password = user, pass
		}
		if ac.Username == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
			if cfg.CredsStore != "" || cfg.CredHelpers[key] != "" {
				return nil, helperOnly(key)
			}
			return nil, fmt.Errorf("registry config %s: %s has no credentials: give \"auth\" or \"username\" and \"password\"", path, key)
		}
		auths[key] = ac
	}
	for host := range cfg.CredHelpers {
		if _, ok := auths[host]; !ok {
			return nil, helperOnly(host)
		}
	}
	if len(auths) == 0 && cfg.CredsStore != "" {
		return nil, helperOnly("every registry")
	}
	return auths, nil
}

// HasImage reports whether the engine has the image ref.
func (d *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	defer d.timed("inspect")()
	if _, err := reference.ParseAnyReference(ref); err != nil {
		return false, invalidImage(ref, err)
	}
	_, err := d.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, d.wrap("inspect image", err)
}

// Pull pulls ref from its registry with the credentials set for that
// registry, if any. It reports progress, when not nil, at most every
// quarter of a second while the pull goes on, and once when it has
// succeeded. A pull that outlasts ctx is abandoned with an error that
// wraps ctx's.
func (d *Runtime) Pull(ctx context.Context, ref string, progress func(oneoff.PullProgress)) error {
	defer d.timed("pull")()
	start := time.Now()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return invalidImage(ref, err)
	}
	p := &puller{d: d, ref: ref, host: reference.Domain(named), start: start}
	var opts image.PullOptions
	if ac, ok := d.registryAuth(p.host); ok {
		p.authed = true
		if opts.RegistryAuth, err = registry.EncodeAuthConfig(ac); err != nil {
			return fmt.Errorf("pull %s: encode the credentials for %s: %w", ref, p.host, err)
		}
	}
	// The engine is given the reference as parsed, so that it pulls what
	// the host was picked for.
	rc, err := d.cli.ImagePull(ctx, named.String(), opts)
	if err != nil {
		return p.fail(ctx, err.Error(), err)
	}
	defer rc.Close()

	agg := newPullAggregate()
	last := start
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			if ctx.Err() != nil {
				return p.fail(ctx, err.Error(), err)
			}
			return fmt.Errorf("pull %s: read the engine's messages: %w", ref, err)
		}
		// A failure after the pull began comes as a message, not as an
		// error of the call.
		if m.Error != nil {
			return p.fail(ctx, m.Error.Message, errors.New(m.Error.Message))
		}
		agg.add(m)
		if progress != nil && time.Since(last) >= pullProgressEvery {
			last = time.Now()
			progress(agg.progress(ref, oneoff.PullPulling))
		}
	}
	if progress != nil {
		status := oneoff.PullPulled
		if agg.upToDate {
			status = oneoff.PullUpToDate
		}
		progress(agg.progress(ref, status))
	}
	return nil
}

// CanPull asks ref's registry, through the engine and with the
// credentials set for that registry, for the image's manifest: whether a
// pull would find it, without pulling it.
func (d *Runtime) CanPull(ctx context.Context, ref string) error {
	defer d.timed("distribution_inspect")()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return invalidImage(ref, err)
	}
	p := &puller{d: d, ref: ref, host: reference.Domain(named), start: time.Now(), op: "distribution_inspect"}
	auth := ""
	if ac, ok := d.registryAuth(p.host); ok {
		p.authed = true
		if auth, err = registry.EncodeAuthConfig(ac); err != nil {
			return fmt.Errorf("check %s: encode the credentials for %s: %w", ref, p.host, err)
		}
	}
	if _, err := d.cli.DistributionInspect(ctx, named.String(), auth); err != nil {
		return p.fail(ctx, err.Error(), err)
	}
	return nil
}

// puller is one pull's context, for its errors.
type puller struct {
	d      *Runtime
	ref    string
	host   string // the registry's, as in the reference
	authed bool   // credentials were given for host
	start  time.Time
	op     string // the engine call, for the metrics: "pull" when empty
}

// fail turns a failed pull into an error a person can act on. msg is what
// the engine said; cause is the error to wrap.
func (p *puller) fail(ctx context.Context, msg string, cause error) error {
	op := p.op
	if op == "" {
		op = "pull"
	}
	p.d.failed(op)
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			took := time.Since(p.start)
			if dl, ok := ctx.Deadline(); ok {
				took = dl.Sub(p.start)
			}
			return &errdefs.Error{Class: errdefs.ErrUnavailable, Code: "pull_timeout", Err: err,
				Message: fmt.Sprintf("pulling %s took longer than %s: registry %s is slow or stuck; try again, or give the pull more time", p.ref, roundDuration(took), p.host)}
		}
		return fmt.Errorf("pull %s: %w", p.ref, err)
	}
	if client.IsErrConnectionFailed(cause) {
		return p.d.wrap("pull image", cause)
	}
	lower := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(lower, s) {
				return true
			}
		}
		return false
	}
	switch {
	case cerrdefs.IsUnauthorized(cause), cerrdefs.IsPermissionDenied(cause),
		has("no basic auth credentials", "unauthorized", "authentication required", "incorrect username or password",
			"denied: ", "access denied", "access to the resource is denied"):
		var m string
		if p.authed {
			m = fmt.Sprintf("registry %s rejected the daemon's credentials for pulling %s: fix them in the daemon's registry config (--registry-config)", p.host, p.ref)
		} else {
			m = fmt.Sprintf("registry %s wants credentials to pull %s, and the daemon has none for it: add them to the daemon's registry config (--registry-config)", p.host, p.ref)
		}
		if has("does not exist") {
			// Docker Hub says the same of a repository it does not have.
			m += ", or check that the image exists"
		}
		// Not Unauthorized: that would tell the daemon's client that its
		// own token is wrong.
		return &errdefs.Error{Class: errdefs.ErrInvalid, Code: "registry_unauthorized", Message: m, Err: cause}
	case cerrdefs.IsNotFound(cause), has("manifest unknown", "name unknown"):
		return p.notFound(cause)
	case cerrdefs.IsUnavailable(cause),
		has("dial tcp", "connection refused", "no such host", "i/o timeout", "timeout exceeded", "tls handshake timeout",
			"network is unreachable", "no route to host", "connection reset", "server misbehaving",
			"service unavailable", "bad gateway", "gateway timeout", "context deadline exceeded"):
		return &errdefs.Error{Class: errdefs.ErrUnavailable, Code: "registry_unavailable", Err: cause,
			Message: fmt.Sprintf("registry %s does not answer: check that it runs and that the engine's host can reach it", p.host)}
	case has("not found"):
		return p.notFound(cause)
	}
	return fmt.Errorf("pull %s: %w", p.ref, cause)
}

func (p *puller) notFound(cause error) error {
	return &errdefs.Error{Class: errdefs.ErrNotFound, Code: "image_not_found", Err: cause,
		Message: fmt.Sprintf("image %s does not exist in registry %s: check its name and tag", p.ref, p.host)}
}

func invalidImage(ref string, err error) error {
	return &errdefs.Error{Class: errdefs.ErrInvalid, Code: "invalid_image", Err: err,
		Message: fmt.Sprintf("%q is not an image reference: write it as [HOST[:PORT]/]NAME[:TAG] or NAME@DIGEST", ref)}
}

// roundDuration rounds d for a message: to the second from a second on.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// pullAggregate sums the engine's per-layer messages.
type pullAggregate struct {
	layers   map[string]*pullLayer
	upToDate bool
}

type pullLayer struct {
	current, total int64
	done           bool
}

func newPullAggregate() *pullAggregate {
	return &pullAggregate{layers: make(map[string]*pullLayer)}
}

// add takes one message of the engine's stream into account.
func (a *pullAggregate) add(m jsonmessage.JSONMessage) {
	if m.ID == "" {
		if strings.HasPrefix(m.Status, "Status: Image is up to date") {
			a.upToDate = true
		}
		return
	}
	var cur, total int64
	if m.Progress != nil {
		cur, total = m.Progress.Current, m.Progress.Total
	}
	layer := func() *pullLayer {
		l := a.layers[m.ID]
		if l == nil {
			l = &pullLayer{}
			a.layers[m.ID] = l
		}
		return l
	}
	// The messages with an ID are about a layer, but for the first,
	// "Pulling from NAME", whose ID is the tag.
	switch {
	case m.Status == "Pulling fs layer", m.Status == "Waiting", strings.HasPrefix(m.Status, "Retrying"):
		layer()
	case m.Status == "Downloading":
		l := layer()
		l.current = cur
		if total > 0 {
			l.total = total
		}
	case m.Status == "Verifying Checksum", m.Status == "Download complete":
		l := layer()
		l.current = l.total
	case m.Status == "Extracting":
		// Its sizes are the download's: the whole layer is here.
		l := layer()
		if total > 0 {
			l.total = total
		}
		l.current = l.total
	case m.Status == "Pull complete":
		l := layer()
		l.current, l.done = l.total, true
	case m.Status == "Already exists":
		layer().done = true
	}
}

// progress returns the sums so far.
func (a *pullAggregate) progress(ref, status string) oneoff.PullProgress {
	p := oneoff.PullProgress{Ref: ref, Status: status, Layers: len(a.layers)}
	for _, l := range a.layers {
		if l.done {
			p.LayersDone++
		}
		p.Bytes += l.current
		p.BytesTotal += l.total
	}
	return p
}
