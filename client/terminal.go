package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"

	"github.com/coder/websocket"

	"github.com/oneoffd/oneoffd/attach"
)

// The ways to reach the attach endpoint, for TerminalOptions.Via.
const (
	// ViaAuto tries the attach port and falls back to the API's port.
	ViaAuto = ""
	// ViaTCP dials the attach port (tcp:// or tls://) only.
	ViaTCP = "tcp"
	// ViaHTTPS speaks the same protocol in a WebSocket on the API's port.
	ViaHTTPS = "https"
)

// DefaultFallbackAfter is how long the attach port's dial may take before
// the terminal goes through the API's port instead.
const DefaultFallbackAfter = 3 * time.Second

// DefaultReconnectFor is how long a terminal tries to reconnect.
const DefaultReconnectFor = 10 * time.Minute

// ackEvery is how much output the terminal receives between two
// acknowledgements.
const ackEvery = 64 << 10

// TerminalOptions tune OpenTerminal and RejoinTerminal.
type TerminalOptions struct {
	// Rows and Cols are the terminal's size, if there is one.
	Rows, Cols uint16
	// TLS configures the connection to a tls:// attach URL.
	TLS *tls.Config
	// Via picks how the attach endpoint is reached: ViaAuto, ViaTCP or
	// ViaHTTPS.
	Via string
	// FallbackAfter bounds the attach port's dial with ViaAuto;
	// DefaultFallbackAfter when zero.
	FallbackAfter time.Duration
	// Notices hears what the terminal says of itself: a fallback, a
	// reconnect. Nothing is said when nil.
	Notices io.Writer
	// ReconnectFor bounds the reconnect attempts after a drop;
	// DefaultReconnectFor when zero.
	ReconnectFor time.Duration
	// NoResume asks for a connection that cannot be resumed: when it
	// drops, the one-off is stopped.
	NoResume bool
}

// Terminal is an attached one-off's terminal that survives the loss of its
// connection: when the connection drops before the end, it reconnects,
// with backoff, using the resume token the daemon gave it, and receives
// exactly the output it missed.
type Terminal struct {
	// Name is the one-off's name.
	Name string
	// Via is how the endpoint was reached: ViaTCP or ViaHTTPS.
	Via string

	c        *Client
	id       string
	url      *url.URL
	opts     TerminalOptions
	fellBack bool // the attach port failed; said once

	mu       sync.Mutex
	cond     *sync.Cond
	att      *Attachment // nil while reconnecting
	token    string
	received int64
	acked    int64
	rows     uint16
	cols     uint16
	closed   bool
}

// OpenTerminal connects to an attached one-off's attach URL with its
// secret. The container starts as the connection is made.
func (c *Client) OpenTerminal(ctx context.Context, attachURL, secret string, opts TerminalOptions) (*Terminal, error) {
	t, err := c.newTerminal(attachURL, opts)
	if err != nil {
		return nil, err
	}
	hello := attach.Hello{ID: t.id, Secret: secret, Framed: true, Resumable: !opts.NoResume, Rows: opts.Rows, Cols: opts.Cols}
	if err := t.connect(ctx, hello); err != nil {
		return nil, err
	}
	return t, nil
}

// RejoinTerminal takes over the terminal of a running attached one-off,
// from another terminal (oneoff attach): the output flows from now on to
// this one, and the other's connection is closed.
func (c *Client) RejoinTerminal(ctx context.Context, id string, opts TerminalOptions) (*Terminal, error) {
	var out apitypes.Rejoined
	if err := c.do(ctx, http.MethodPost, "/v1/oneoffs/"+url.PathEscape(id)+"/terminal", nil, &out); err != nil {
		return nil, err
	}
	t, err := c.newTerminal(out.AttachURL, opts)
	if err != nil {
		return nil, err
	}
	hello := attach.Hello{ID: t.id, Secret: out.ResumeToken, Framed: true, Resume: true, From: attach.FromLive}
	if err := t.connect(ctx, hello); err != nil {
		return nil, err
	}
	if opts.Rows > 0 {
		_ = t.Resize(opts.Rows, opts.Cols)
	}
	return t, nil
}

func (c *Client) newTerminal(attachURL string, opts TerminalOptions) (*Terminal, error) {
	u, err := url.Parse(attachURL)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "tls") || u.Host == "" {
		return nil, fmt.Errorf("attach URL %q is not of the form tcp://HOST:PORT/ID", attachURL)
	}
	switch opts.Via {
	case ViaAuto, ViaTCP, ViaHTTPS:
	default:
		return nil, fmt.Errorf("cannot attach via %q: use tcp or https", opts.Via)
	}
	t := &Terminal{c: c, id: strings.TrimPrefix(u.Path, "/"), url: u, opts: opts, rows: opts.Rows, cols: opts.Cols}
	t.cond = sync.NewCond(&t.mu)
	return t, nil
}

// connect dials, shakes hands with hello and makes the result current.
func (t *Terminal) connect(ctx context.Context, hello attach.Hello) error {
	conn, err := t.dial(ctx)
	if err != nil {
		return err
	}
	// A port that accepts but does not answer (a middlebox dropping it)
	// is as unreachable as one that does not accept: with ViaAuto, the
	// answer must come in time too, or the API's port is tried.
	auto := t.opts.Via == ViaAuto && t.Via == ViaTCP && !t.fellBack
	if auto {
		_ = conn.SetDeadline(time.Now().Add(t.fallbackAfter()))
	}
	att, acc, err := handshake(ctx, conn, hello)
	var refused *Error
	if err != nil && auto && !errors.As(err, &refused) && ctx.Err() == nil {
		tcpErr := err
		if conn, err = t.dialWebSocket(ctx); err != nil {
			return fmt.Errorf("attach endpoint %s: %w; through the API's port: %w", t.url.Host, tcpErr, err)
		}
		t.fellBackNotice()
		auto = false
		att, acc, err = handshake(ctx, conn, hello)
	}
	if err != nil {
		return err
	}
	if auto {
		_ = conn.SetDeadline(time.Time{})
	}
	t.mu.Lock()
	t.Name, t.token, t.att = acc.Name, acc.Token, att
	if hello.Resume && hello.From >= 0 {
		t.acked = hello.From
	}
	acked := t.acked
	t.cond.Broadcast()
	t.mu.Unlock()
	if hello.Resume && acc.Token != "" {
		// Say at once that the reply, and so the next token, arrived:
		// until then the daemon still takes the token this connection
		// resumed with, in case the reply was lost.
		_ = att.w.WriteFrame(attach.Ack, attach.EncodeAck(max(acked, 0)))
	}
	return nil
}

// dial reaches the endpoint the way that works, remembering it for the
// reconnects.
func (t *Terminal) dial(ctx context.Context) (net.Conn, error) {
	via := t.Via
	if via == "" {
		via = t.opts.Via
	}
	if via == ViaHTTPS {
		return t.dialWebSocket(ctx)
	}
	wait := t.fallbackAfter()
	dctx := ctx
	if via == ViaAuto {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	conn, err := t.dialTCP(dctx)
	if err == nil {
		t.Via = ViaTCP
		return conn, nil
	}
	if via == ViaTCP || ctx.Err() != nil {
		return nil, err
	}
	conn, werr := t.dialWebSocket(ctx)
	if werr != nil {
		return nil, fmt.Errorf("%w; through the API's port: %w", err, werr)
	}
	t.fellBackNotice()
	return conn, nil
}

func (t *Terminal) fallbackAfter() time.Duration {
	if t.opts.FallbackAfter > 0 {
		return t.opts.FallbackAfter
	}
	return DefaultFallbackAfter
}

// fellBackNotice says, once, that the terminal goes through the API.
func (t *Terminal) fellBackNotice() {
	if t.fellBack {
		return
	}
	t.fellBack = true
	if t.opts.Notices != nil {
		fmt.Fprintf(t.opts.Notices, "oneoff: the attach port %s cannot be reached; attaching through the API's HTTPS port\r\n", t.url.Host)
	}
}

func (t *Terminal) dialTCP(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.url.Host)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the attach endpoint %s: %w", t.url.Host, err)
	}
	if t.url.Scheme != "tls" {
		return conn, nil
	}
	cfg := t.opts.TLS
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = t.url.Hostname()
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", t.url.Host, err)
	}
	return tc, nil
}

// dialWebSocket opens GET /v1/oneoffs/{id}/attach as a WebSocket, through
// the proxy that HTTPS_PROXY names if any.
func (t *Terminal) dialWebSocket(ctx context.Context) (net.Conn, error) {
	h := http.Header{}
	if t.c.token != "" {
		h.Set("Authorization", "Bearer "+t.c.token)
	}
	if t.c.requester != "" {
		h.Set(apitypes.RequesterHeader, t.c.requester)
	}
	u := t.c.base + "/v1/oneoffs/" + url.PathEscape(t.id) + "/attach"
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: t.c.http1(), HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			// The daemon's own words: a bad token, an unknown one-off...
			return nil, fmt.Errorf("attach through the API's port: %w", t.c.apiError(resp, http.MethodGet, "/v1/oneoffs/"+t.id+"/attach"))
		}
		return nil, fmt.Errorf("attach through the API's port: %w", err)
	}
	ws.SetReadLimit(attach.MaxFrameLen + 64)
	t.Via = ViaHTTPS
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}

// handshake sends hello on conn and reads the daemon's answer.
func handshake(ctx context.Context, conn net.Conn, hello attach.Hello) (*Attachment, attach.Accept, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, hello.String()); err != nil {
		conn.Close()
		return nil, attach.Accept{}, fmt.Errorf("send handshake: %w", err)
	}
	br := bufio.NewReader(conn)
	acc, err := readAccept(conn, br)
	if err != nil {
		return nil, acc, err
	}
	return &Attachment{Name: acc.Name, conn: conn, r: attach.NewReader(br), w: attach.NewWriter(conn)}, acc, nil
}

// current waits for a connection while the terminal reconnects.
func (t *Terminal) current() *Attachment {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.att == nil && !t.closed {
		t.cond.Wait()
	}
	return t.att
}

// Write sends bytes to the one-off's stdin. While the terminal
// reconnects it waits; bytes in flight when the connection dropped may be
// lost, never sent twice.
func (t *Terminal) Write(p []byte) (int, error) {
	if att := t.current(); att != nil {
		_, _ = att.Write(p)
		return len(p), nil
	}
	return 0, net.ErrClosed
}

// CloseStdin ends the one-off's stdin.
func (t *Terminal) CloseStdin() error {
	if att := t.current(); att != nil {
		return att.CloseStdin()
	}
	return net.ErrClosed
}

// Resize tells the one-off's TTY the terminal's new size; a reconnect
// tells it again.
func (t *Terminal) Resize(rows, cols uint16) error {
	t.mu.Lock()
	t.rows, t.cols = rows, cols
	att := t.att
	t.mu.Unlock()
	if att == nil {
		return nil
	}
	return att.Resize(rows, cols)
}

// Signal sends a signal, by name ("INT", "TERM", ...), to the one-off.
func (t *Terminal) Signal(name string) error {
	if att := t.current(); att != nil {
		return att.Signal(name)
	}
	return net.ErrClosed
}

// Close closes the connection. A one-off still running then goes on for
// the daemon's reconnect grace, unless the terminal cannot resume.
func (t *Terminal) Close() error {
	t.mu.Lock()
	t.closed = true
	att := t.att
	t.cond.Broadcast()
	t.mu.Unlock()
	if att != nil {
		return att.Close()
	}
	return nil
}

// Copy writes the one-off's output to stdout and stderr, and notices to
// notices, until the one-off ends, reconnecting when the connection drops;
// it returns how the one-off ended.
func (t *Terminal) Copy(ctx context.Context, stdout, stderr, notices io.Writer) (attach.ExitStatus, error) {
	for {
		att := t.current()
		if att == nil {
			return attach.ExitStatus{}, ErrConnectionLost
		}
		status, ended, err := t.copyFrom(att, stdout, stderr, notices)
		if ended || !errors.Is(err, ErrConnectionLost) {
			return status, err
		}
		if err := t.reconnect(ctx, att, notices); err != nil {
			return attach.ExitStatus{}, err
		}
	}
}

// copyFrom copies from one connection until it ends.
func (t *Terminal) copyFrom(att *Attachment, stdout, stderr, notices io.Writer) (attach.ExitStatus, bool, error) {
	for {
		typ, p, err := att.r.ReadFrame()
		if err != nil {
			return attach.ExitStatus{}, false, fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		switch typ {
		case attach.Stdout, attach.Stderr:
			w := stdout
			if typ == attach.Stderr {
				w = stderr
			}
			if _, err := w.Write(p); err != nil {
				return attach.ExitStatus{}, true, fmt.Errorf("write output: %w", err)
			}
			t.mu.Lock()
			t.received += int64(len(p))
			ack := t.token != "" && t.received-t.acked >= ackEvery
			if ack {
				t.acked = t.received
			}
			n := t.received
			t.mu.Unlock()
			if ack {
				_ = att.w.WriteFrame(attach.Ack, attach.EncodeAck(n))
			}
		case attach.Message:
			_, _ = notices.Write(p)
		case attach.Exit:
			s, err := attach.DecodeExit(p)
			return s, true, err
		}
	}
}

// reconnect replaces the lost connection, with backoff, until the daemon
// takes the terminal back or refuses it.
func (t *Terminal) reconnect(ctx context.Context, lost *Attachment, notices io.Writer) error {
	lost.Close()
	t.mu.Lock()
	if t.att == lost {
		t.att = nil
	}
	token, closed := t.token, t.closed
	t.mu.Unlock()
	if token == "" || closed {
		return ErrConnectionLost
	}
	fmt.Fprintf(notices, "\r\noneoff: connection to %s lost; reconnecting...\r\n", t.Name)
	backoff := 250 * time.Millisecond
	limit := t.opts.ReconnectFor
	if limit <= 0 {
		limit = DefaultReconnectFor
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for attempt := 1; ; attempt++ {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return ErrConnectionLost
		}
		hello := attach.Hello{ID: t.id, Secret: t.token, Framed: true, Resume: true, From: t.received}
		rows, cols := t.rows, t.cols
		t.mu.Unlock()
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		err := t.connect(dctx, hello)
		dcancel()
		if err == nil {
			fmt.Fprintf(notices, "oneoff: reconnected to %s.\r\n", t.Name)
			if rows > 0 {
				_ = t.Resize(rows, cols)
			}
			return nil
		}
		// The daemon's refusal ends it; a proxy's 5xx on the way is a
		// network's blip, tried again like one.
		if ae := (*Error)(nil); errors.As(err, &ae) && !(ae.Code == "http_error" && ae.Status >= 500) {
			return fmt.Errorf("%w: reconnect refused: %s", ErrConnectionLost, ae.Message)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The host answers but oneoffd does not listen: it stopped,
			// and its sessions with it (a network that dropped does not
			// answer at all).
			return fmt.Errorf("%w: oneoffd no longer listens (%v)", ErrConnectionLost, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrConnectionLost, ctx.Err())
		case <-time.After(backoff):
		}
		if attempt%4 == 0 {
			fmt.Fprintf(notices, "oneoff: still reconnecting to %s: %v\r\n", t.Name, err)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// readAccept reads the daemon's answer to a handshake from br; a refusal
// is an *Error with the daemon's code. conn is closed when it is no
// accept.
func readAccept(conn io.Closer, br *bufio.Reader) (attach.Accept, error) {
	acc, err := attach.ReadAccept(br)
	if err != nil {
		conn.Close()
		var refused *attach.RefusedError
		if errors.As(err, &refused) {
			return acc, &Error{Code: refused.Code, Message: refused.Message}
		}
		return acc, err
	}
	return acc, nil
}
