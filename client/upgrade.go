package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/version"

	"github.com/oneoffd/oneoffd/attach"
)

// CreateAttached starts an attached one-off of app and attaches a terminal
// to it in one request: the daemon switches the request's connection to
// the attach protocol (apitypes.AttachUpgrade), which saves the second
// connection and the handshake's round trip. A daemon that does not switch
// answers as CreateOneOff does: the Terminal is then nil and the caller
// dials created.AttachURL with OpenTerminal.
func (c *Client) CreateAttached(ctx context.Context, app string, in apitypes.CreateOneOff, opts TerminalOptions) (*Terminal, apitypes.Created, error) {
	path := "/v1/apps/" + url.PathEscape(app) + "/oneoffs"
	b, err := json.Marshal(in)
	if err != nil {
		return nil, apitypes.Created{}, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, apitypes.Created{}, fmt.Errorf("bad API URL %q: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", apitypes.AttachUpgrade)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.requester != "" {
		req.Header.Set(apitypes.RequesterHeader, c.requester)
	}
	resp, err := c.sendRequest(c.http1(), req, http.MethodPost, path)
	if err != nil {
		return nil, apitypes.Created{}, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		var created apitypes.Created
		if err := json.NewDecoder(resp.Body).Decode(&created); err != nil {
			return nil, created, fmt.Errorf("POST %s: decode answer: %w", path, err)
		}
		return nil, created, nil
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, apitypes.Created{}, errors.New("the daemon switched protocols on a connection that cannot be written")
	}
	created := apitypes.Created{AttachURL: resp.Header.Get(apitypes.OneOffAttachURLHeader)}
	created.ID, created.Name = resp.Header.Get(apitypes.OneOffIDHeader), resp.Header.Get(apitypes.OneOffNameHeader)
	t, err := c.newTerminal(created.AttachURL, opts)
	if err != nil {
		rwc.Close()
		return nil, created, err
	}
	conn := &upgradedConn{ReadWriteCloser: rwc}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	acc, err := readAccept(conn, br)
	if err != nil {
		return nil, created, err
	}
	t.Name, t.token = acc.Name, acc.Token
	t.att = &Attachment{Name: acc.Name, conn: conn, r: attach.NewReader(br), w: attach.NewWriter(conn)}
	return t, created, nil
}

// sendRequest sends req and returns the response when its status is not an
// error; otherwise the API's error, as an *Error.
func (c *Client) sendRequest(hc *http.Client, req *http.Request, method, path string) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return nil, fmt.Errorf("cannot reach oneoffd at %s: is it running? (set --api or ONEOFF_API_URL): %w", c.base, err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if v := resp.Header.Get(apitypes.VersionHeader); v != "" && c.mismatch != nil && v != strconv.Itoa(version.API) {
		c.warned.Do(func() { c.mismatch(v) })
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.apiError(resp, method, path)
}

// apiError is the API's error in resp, an answer of an error status, as an
// *Error: the daemon's code and message when the body holds them.
func (c *Client) apiError(resp *http.Response, method, path string) error {
	var eb apitypes.ErrorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(raw, &eb) != nil || eb.Error.Message == "" {
		return &Error{Status: resp.StatusCode, Code: "http_error",
			Message: fmt.Sprintf("%s %s: unexpected answer %s from %s", method, path, resp.Status, c.base)}
	}
	return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
}

// http1 is the Client's HTTP client held to HTTP/1.1, in which a
// connection can switch protocols (HTTP/2 has no Upgrade); it is made once
// and shares its connections from then on.
func (c *Client) http1() *http.Client {
	c.h1.once.Do(func() {
		c.h1.client = c.http
		tr, ok := c.http.Transport.(*http.Transport)
		if !ok {
			return
		}
		tr = tr.Clone()
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		if tr.TLSClientConfig != nil {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		c.h1.client = &http.Client{Transport: tr}
	})
	return c.h1.client
}

// lazyHTTP1 holds a Client's HTTP/1.1 client once made.
type lazyHTTP1 struct {
	once   sync.Once
	client *http.Client
}

// upgradedConn is an HTTP connection switched to the attach protocol, as a
// net.Conn; it has no deadlines.
type upgradedConn struct {
	io.ReadWriteCloser
}

func (c *upgradedConn) LocalAddr() net.Addr                { return upgradedAddr{} }
func (c *upgradedConn) RemoteAddr() net.Addr               { return upgradedAddr{} }
func (c *upgradedConn) SetDeadline(t time.Time) error      { return nil }
func (c *upgradedConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *upgradedConn) SetWriteDeadline(t time.Time) error { return nil }

type upgradedAddr struct{}

func (upgradedAddr) Network() string { return "http" }
func (upgradedAddr) String() string  { return "api" }
