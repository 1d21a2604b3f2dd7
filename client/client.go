// Package client talks to oneoffd: its HTTP API and its attach endpoint.
// The oneoff CLI is built on it, and so can any Go program of a platform.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Client calls the HTTP API.
type Client struct {
	base      string
	token     string
	requester string
	http      *http.Client
	// h1 is http held to HTTP/1.1, made once and shared by the copies of
	// the Client: see http1.
	h1 *lazyHTTP1
	// mismatch, when set, hears once of a daemon speaking another API
	// version.
	mismatch func(daemon string)
	warned   *sync.Once
}

// WithVersionCheck returns a Client that calls fn, once, when the daemon
// answers with an API version other than the one this package speaks.
func (c *Client) WithVersionCheck(fn func(daemonAPI string)) *Client {
	cc := *c
	cc.mismatch, cc.warned = fn, &sync.Once{}
	return &cc
}

// WithRequester returns a Client that names, in every request, the user it
// acts for, as the audit trail records them.
func (c *Client) WithRequester(name string) *Client {
	cc := *c
	cc.requester = name
	return &cc
}

// New returns a Client for the API at baseURL (e.g. http://127.0.0.1:8080)
// that authenticates with token. tlsConfig, which may be nil, is used for an
// https:// URL.
func New(baseURL, token string, tlsConfig *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Transport: tr}, h1: &lazyHTTP1{}}
}

// Error is an error the API answered with.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is match the errdefs class the answer's status stands
// for, as the daemon mapped it: errors.Is(err, errdefs.ErrQuota) says a
// quota refused the request, which may pass once other one-offs ended.
func (e *Error) Is(target error) bool {
	class, ok := statusClass[e.Status]
	return ok && target == class
}

// statusClass is the reverse of the daemon's mapping of classes to statuses.
var statusClass = map[int]error{
	http.StatusBadRequest:            errdefs.ErrInvalid,
	http.StatusUnauthorized:          errdefs.ErrUnauthorized,
	http.StatusNotFound:              errdefs.ErrNotFound,
	http.StatusConflict:              errdefs.ErrConflict,
	http.StatusRequestEntityTooLarge: errdefs.ErrTooLarge,
	http.StatusTooManyRequests:       errdefs.ErrQuota,
	http.StatusServiceUnavailable:    errdefs.ErrUnavailable,
}

// Deploy registers a release of app.
func (c *Client) Deploy(ctx context.Context, app string, spec apitypes.Deploy) (apitypes.Release, error) {
	var rel apitypes.Release
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/deployments", spec, &rel)
	return rel, err
}

// Apps lists the apps.
func (c *Client) Apps(ctx context.Context) ([]apitypes.App, error) {
	var out struct {
		Apps []apitypes.App `json:"apps"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, &out)
	return out.Apps, err
}

// App returns an app and its current release.
func (c *Client) App(ctx context.Context, name string) (apitypes.App, error) {
	var app apitypes.App
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), nil, &app)
	return app, err
}

// CreateOneOff starts a one-off of app.
func (c *Client) CreateOneOff(ctx context.Context, app string, req apitypes.CreateOneOff) (apitypes.Created, error) {
	var out apitypes.Created
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/oneoffs", req, &out)
	return out, err
}

// OneOffs lists one-offs; zero filter fields match all.
func (c *Client) OneOffs(ctx context.Context, f Filter) ([]apitypes.OneOff, error) {
	q := url.Values{}
	for k, v := range map[string]string{"app": f.App, "state": string(f.State), "mode": string(f.Mode)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	path := "/v1/oneoffs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		OneOffs []apitypes.OneOff `json:"oneoffs"`
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.OneOffs, err
}

// OneOff returns one one-off, by its id.
func (c *Client) OneOff(ctx context.Context, id string) (apitypes.OneOff, error) {
	o, _, err := c.Lookup(ctx, "", id)
	return o, err
}

// Lookup returns the one-off ref names: its id, or its name, looked for
// in app when app is not empty. It also says how long a stop of it waits
// between SIGTERM and SIGKILL, 0 when the daemon does not say.
func (c *Client) Lookup(ctx context.Context, app, ref string) (apitypes.OneOff, time.Duration, error) {
	var o apitypes.OneOff
	resp, err := c.send(ctx, http.MethodGet, oneOffPath(app, ref, ""), nil)
	if err != nil {
		return o, 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return o, 0, fmt.Errorf("decode one-off %q: %w", ref, err)
	}
	grace, _ := time.ParseDuration(resp.Header.Get(apitypes.StopGraceHeader))
	return o, grace, nil
}

// Stop stops a one-off, by its id, and returns it once finished.
func (c *Client) Stop(ctx context.Context, id string) (apitypes.OneOff, error) {
	return c.StopIn(ctx, "", id)
}

// StopIn stops the one-off ref names, its id or its name in app, and
// returns it once finished.
func (c *Client) StopIn(ctx context.Context, app, ref string) (apitypes.OneOff, error) {
	var o apitypes.OneOff
	err := c.do(ctx, http.MethodPost, oneOffPath(app, ref, "/stop"), nil, &o)
	return o, err
}

// oneOffPath is the path of a one-off's route: ref, an id or a name, with
// the app a name is looked for in.
func oneOffPath(app, ref, sub string) string {
	p := "/v1/oneoffs/" + url.PathEscape(ref) + sub
	if app != "" {
		p += "?app=" + url.QueryEscape(app)
	}
	return p
}

// Audit returns the audit trail's events that pass f, newest first.
func (c *Client) Audit(ctx context.Context, f AuditFilter) ([]apitypes.AuditEvent, error) {
	q := url.Values{}
	if f.App != "" {
		q.Set("app", f.App)
	}
	if f.OneOffID != "" {
		q.Set("oneoff", f.OneOffID)
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var out struct {
		Events []apitypes.AuditEvent `json:"events"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &out)
	return out.Events, err
}

// Health returns the daemon's /healthz answer.
func (c *Client) Health(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	err := c.do(ctx, http.MethodGet, "/healthz", nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send makes a request with in as its JSON body, if any, and returns the
// response when its status is a success; otherwise the API's error, as an
// *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	if in == nil {
		return c.sendBody(ctx, method, path, nil, "")
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return c.sendBody(ctx, method, path, bytes.NewReader(b), "application/json")
}

// sendBody is send with a body of any type.
func (c *Client) sendBody(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("bad API URL %q: %w", c.base, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.requester != "" {
		req.Header.Set(apitypes.RequesterHeader, c.requester)
	}
	return c.sendRequest(c.http, req, method, path)
}

// Filter narrows a listing of one-offs. Zero fields match everything.
type Filter struct {
	App   string
	State apitypes.State
	Mode  apitypes.Mode
	// Limit caps the number of records, newest first; 0 means the
	// daemon's default.
	Limit int
}

// AuditFilter narrows the audit trail. Zero fields match everything.
type AuditFilter struct {
	App string
	// OneOffID is a one-off's id, or its name (in App, when set).
	OneOffID string
	Limit    int
}
