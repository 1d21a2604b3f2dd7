// Package api serves oneoffd's HTTP API and its attach endpoint, the TCP
// listener through which a terminal reaches an attached one-off.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/version"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// VersionHeader is the response header that carries the API's version, so
// that a client can tell a daemon it does not speak.
const VersionHeader = apitypes.VersionHeader

// MaxJSONBody bounds a JSON request body.
const MaxJSONBody = 1 << 20

// Config tunes the Server.
type Config struct {
	// Token is the bearer token every /v1 request must carry.
	Token string
	// AttachAddr is the attach listener's address, e.g. ":5000".
	AttachAddr string
	// AttachHost, if set, is the host[:port] clients dial for attach;
	// otherwise the host the API request came to is used with AttachAddr's
	// port.
	AttachHost string
	// AttachTLS says whether the attach listener speaks TLS.
	AttachTLS bool
	// Version and Commit say which build serves, for /healthz.
	Version, Commit string
	// MetricsPublic serves /metrics without the token.
	MetricsPublic bool
}

// Checker reports whether a dependency works.
type Checker func(ctx context.Context) error

// DrainStore keeps the apps' log drain URLs.
type DrainStore interface {
	AppDrains(ctx context.Context, app string) ([]string, error)
	SetAppDrains(ctx context.Context, app string, urls []string) error
}

// Deps are what the Server serves.
type Deps struct {
	OneOffs *oneoff.Manager
	Deploys *deploy.Service
	Logs    *logs.Store
	// Drains forwards logs; DrainStore keeps each app's drains.
	Drains     *logs.Drains
	DrainStore DrainStore
	Log        *slog.Logger
	// Metrics is served at /metrics when set.
	Metrics prometheus.Gatherer
	// Ready names the checks /readyz runs.
	Ready map[string]Checker
	// ReadyDetails, when set, gives notes /readyz shows without failing,
	// such as a protection the engine cannot provide.
	ReadyDetails func() []string
	// Cron serves the apps' cron jobs; their routes answer 404 when nil.
	Cron Cron
}

// Server is the HTTP API.
type Server struct {
	cfg        Config
	oneoffs    *oneoff.Manager
	deploys    *deploy.Service
	logs       *logs.Store
	drains     *logs.Drains
	drainStore DrainStore
	log        *slog.Logger
	gather     prometheus.Gatherer
	ready      map[string]Checker
	details    func() []string
	cron       Cron
	attach     *AttachServer // set by ServeAttach

	streams     chan struct{} // closed to end long-lived log streams
	closeStream sync.Once
}

// NewServer returns the API server.
func NewServer(cfg Config, d Deps) *Server {
	return &Server{cfg: cfg, oneoffs: d.OneOffs, deploys: d.Deploys, logs: d.Logs, drains: d.Drains,
		drainStore: d.DrainStore, log: d.Log, gather: d.Metrics, ready: d.Ready, details: d.ReadyDetails, cron: d.Cron, streams: make(chan struct{})}
}

// CloseStreams ends the log streams under way, so that a graceful shutdown
// need not wait for followers that never end by themselves.
func (s *Server) CloseStreams() {
	s.closeStream.Do(func() { close(s.streams) })
}

// Handler returns the router.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errdefs.NotFound("route_not_found", "no route %s %s: see docs/ for the API", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed",
			Message: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)}})
	})
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	if s.gather != nil {
		metrics := promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{})
		if !s.cfg.MetricsPublic {
			metrics = s.authenticate(metrics)
		}
		r.Method(http.MethodGet, "/metrics", metrics)
	}
	s.mountUI(r)
	r.Route("/v1", func(r chi.Router) {
		r.Use(apiVersion, s.authenticate)
		r.Get("/apps", s.listApps)
		r.Get("/apps/{app}", s.getApp)
		r.Post("/apps/{app}/deployments", s.deploy)
		r.Post("/apps/{app}/oneoffs", s.createOneOff)
		r.Get("/apps/{app}/logs", s.appLogs)
		r.Get("/apps/{app}/drains", s.getDrains)
		r.Put("/apps/{app}/drains", s.setDrains)
		r.Get("/drains", s.listDrains)
		r.Get("/oneoffs", s.listOneOffs)
		r.Get("/oneoffs/{id}", s.getOneOff)
		r.Get("/oneoffs/{id}/logs", s.oneOffLogs)
		r.Post("/oneoffs/{id}/stop", s.stopOneOff)
		s.mountTerminal(r)
		r.Get("/audit", s.audit)
		s.mountCron(r)
	})
	return r
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got == "" {
			s.writeError(w, r, errdefs.Unauthorized("token_required",
				"this API needs a bearer token: send \"Authorization: Bearer TOKEN\" (the daemon prints where it keeps its token)"))
			return
		}
		if s.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			s.writeError(w, r, errdefs.Unauthorized("wrong_token", "the bearer token is wrong: use the daemon's API token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiVersion stamps every /v1 answer with the API's version.
func apiVersion(next http.Handler) http.Handler {
	v := strconv.Itoa(version.API)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(VersionHeader, v)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "api_version": version.API,
		"version": s.cfg.Version, "commit": s.cfg.Commit})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	failures := map[string]string{}
	for name, check := range s.ready {
		if err := check(ctx); err != nil {
			// Anyone may ask: the answer names the check, and the details
			// (paths, the engine's address) go to the daemon's log only.
			failures[name] = checkFailure(err)
			s.log.Warn("readiness check failed", "check", name, "err", err)
		}
	}
	if len(failures) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, s.withDetails(map[string]any{"status": "not ready", "failures": failures}))
		return
	}
	writeJSON(w, http.StatusOK, s.withDetails(map[string]any{"status": "ready"}))
}

// withDetails adds the readiness notes that fail nothing to a /readyz body.
func (s *Server) withDetails(body map[string]any) map[string]any {
	if s.details != nil {
		if d := s.details(); len(d) > 0 {
			body["details"] = d
		}
	}
	return body
}

// checkFailure is what /readyz says of a failed check: the error's stable
// code, or a generic reason, never its text.
func checkFailure(err error) string {
	switch e, ok := errdefs.As(err); {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out; see the daemon's log"
	case ok:
		return e.Code + "; see the daemon's log"
	}
	return "failed; see the daemon's log"
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	limit, err := listLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	apps, err := s.deploys.Apps(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	apps = apps[:min(len(apps), limit)]
	if apps == nil {
		apps = []deploy.App{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": apps})
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	app, err := s.deploys.App(r.Context(), chi.URLParam(r, "app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, app)
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var spec deploy.Spec
	if err := decodeJSON(w, r, &spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	rel, err := s.deploys.Deploy(r.Context(), chi.URLParam(r, "app"), spec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("release registered", "app", rel.App, "release", rel.Version, "image", rel.Image)
	writeJSON(w, http.StatusCreated, rel)
}

// CreateOneOff is the body of POST /v1/apps/{app}/oneoffs.
type CreateOneOff = apitypes.CreateOneOff

// Created is the answer to POST /v1/apps/{app}/oneoffs: the one-off, and
// for an attached one, where and how its terminal attaches.
type Created struct {
	oneoff.OneOff
	AttachURL    string `json:"attach_url,omitempty"`
	AttachSecret string `json:"attach_secret,omitempty"`
}

func (s *Server) createOneOff(w http.ResponseWriter, r *http.Request) {
	var body CreateOneOff
	var uploads oneoff.UploadReader
	if mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		var err error
		if uploads, err = s.decodeMultipart(w, r, params["boundary"], &body); err != nil {
			s.writeError(w, r, err)
			return
		}
	} else {
		if err := decodeJSON(w, r, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		if len(body.Files) > 0 {
			s.writeError(w, r, errdefs.Invalid("files_need_multipart", "files come with the request as multipart/form-data: a \"request\" part with this JSON, then a \"file\" part for each file"))
			return
		}
	}
	if body.Requester == "" {
		body.Requester = r.Header.Get(RequesterHeader)
	}
	req := oneoff.Request{
		Command: oneoff.Command{Line: body.Command.Line, Args: body.Command.Args},
		Type:    body.Type, Env: body.Env, TTY: !body.Detached,
		Term: body.Term, Requester: body.Requester, Detached: body.Detached,
		UploadData: uploads,
	}
	for _, f := range body.Files {
		req.Uploads = append(req.Uploads, oneoff.Upload(f))
	}
	if body.TTY != nil {
		req.TTY = *body.TTY
	}
	if body.TTL != "" {
		ttl, err := apitypes.ParseTTL(body.TTL)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		req.TTL = ttl
	}
	if body.Window != nil {
		req.Window = oneoff.TermSize(*body.Window)
	}
	req.Size = body.Size
	o, secret, err := s.oneoffs.Create(r.Context(), chi.URLParam(r, "app"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if o.Mode == oneoff.Attached && attachUpgrade(r) && s.upgradeToAttach(w, r, o, secret, req.Window) {
		return
	}
	created := Created{OneOff: o}
	if o.Mode == oneoff.Attached {
		created.AttachURL, created.AttachSecret = s.attachURL(r, o.ID), secret
	}
	writeJSON(w, http.StatusCreated, created)
}

// attachURL says where the client dials to reach one-off id's terminal.
func (s *Server) attachURL(r *http.Request, id string) string {
	scheme := "tcp"
	if s.cfg.AttachTLS {
		scheme = "tls"
	}
	host := s.cfg.AttachHost
	if host == "" {
		_, port, err := net.SplitHostPort(s.cfg.AttachAddr)
		if err != nil || port == "" {
			port = "5000"
		}
		h := r.Host
		if hh, _, err := net.SplitHostPort(r.Host); err == nil {
			h = hh
		}
		host = net.JoinHostPort(strings.Trim(h, "[]"), port)
	}
	return scheme + "://" + host + "/" + id
}

func (s *Server) listOneOffs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := oneoff.Filter{App: q.Get("app"), State: oneoff.State(q.Get("state")), Mode: oneoff.Mode(q.Get("mode"))}
	if f.State != "" && !f.State.Valid() {
		s.writeError(w, r, errdefs.Invalid("invalid_state", "state %q is unknown: use pending, running or finished", f.State))
		return
	}
	if f.Mode != "" && f.Mode != oneoff.Attached && f.Mode != oneoff.Detached {
		s.writeError(w, r, errdefs.Invalid("invalid_mode", "mode %q is unknown: use attached or detached", f.Mode))
		return
	}
	var err error
	if f.Limit, err = listLimit(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.oneoffs.List(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []oneoff.OneOff{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"oneoffs": list})
}

// oneOff finds the one-off a route's {id} names: its id, or its name,
// looked for in the app of the request's ?app= when it has one.
func (s *Server) oneOff(r *http.Request) (oneoff.OneOff, error) {
	return s.oneoffs.Resolve(r.Context(), r.URL.Query().Get("app"), chi.URLParam(r, "id"))
}

func (s *Server) getOneOff(w http.ResponseWriter, r *http.Request) {
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(apitypes.StopGraceHeader, s.oneoffs.Config().StopGrace.String())
	writeJSON(w, http.StatusOK, o)
}

// RequesterHeader names the user a platform acts for, for the audit trail.
const RequesterHeader = apitypes.RequesterHeader

func (s *Server) stopOneOff(w http.ResponseWriter, r *http.Request) {
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err = s.oneoffs.Stop(r.Context(), o.ID, r.Header.Get(RequesterHeader))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := oneoff.AuditFilter{App: q.Get("app")}
	if ref := q.Get("oneoff"); ref != "" {
		// A name is looked up; the trail outlives the records, so a
		// reference no record answers to any more is taken as an id.
		f.OneOffID = ref
		o, err := s.oneoffs.Resolve(r.Context(), f.App, ref)
		switch {
		case err == nil:
			f.OneOffID = o.ID
		case !errors.Is(err, errdefs.ErrNotFound):
			s.writeError(w, r, err)
			return
		}
	}
	var err error
	if f.Limit, err = listLimit(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	events, err := s.oneoffs.Audit(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

// The bounds of a list route's answer: DefaultListLimit items, newest
// first, unless the request's limit asks for another number, at most
// MaxListLimit. A larger limit is refused, with the maximum in the
// message, rather than silently cut.
const (
	DefaultListLimit = apitypes.DefaultListLimit
	MaxListLimit     = apitypes.MaxListLimit
)

// listLimit reads a list route's limit parameter.
func listLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return DefaultListLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxListLimit {
		return 0, errdefs.Invalid("invalid_limit", "limit %q must be a whole number from 1 to %d, the most a listing returns", v, MaxListLimit)
	}
	return n, nil
}

// decodeJSON reads a JSON body strictly: unknown fields, trailing data and
// oversized bodies are refused, so that a typo never passes silently.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errdefs.Invalid("unsupported_content_type", "content type %q is not supported here: send application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, next := dec.Token(); !errors.Is(next, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return errdefs.TooLarge("body_too_large", "the request body is over the %d-byte limit", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return errdefs.Invalid("empty_body", "the request body is empty: send a JSON object")
	}
	return errdefs.Invalid("invalid_json", "the request body is not valid JSON for this route: %v", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
