package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/oneoffd/oneoffd/attach"
)

// ErrConnectionLost is the attach connection ending before the one-off's
// exit status arrived.
var ErrConnectionLost = errors.New("the connection to oneoffd ended before the one-off did")

// AttachOptions tune Dial.
type AttachOptions struct {
	// Rows and Cols are the terminal's size, if there is one.
	Rows, Cols uint16
	// TLS configures the connection to a tls:// attach URL.
	TLS *tls.Config
}

// Attachment is a terminal's connection to an attached one-off, in framed
// mode.
type Attachment struct {
	// Name is the one-off's name.
	Name string
	conn net.Conn
	r    *attach.Reader
	w    *attach.Writer
}

// Dial connects to the attach URL (tcp://HOST:PORT/ID or tls://...) with
// the one-off's secret. The container starts as the connection is made.
func Dial(ctx context.Context, attachURL, secret string, opts AttachOptions) (*Attachment, error) {
	u, err := url.Parse(attachURL)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "tls") || u.Host == "" {
		return nil, fmt.Errorf("attach URL %q is not of the form tcp://HOST:PORT/ID", attachURL)
	}
	id := strings.TrimPrefix(u.Path, "/")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the attach endpoint %s: %w", u.Host, err)
	}
	if u.Scheme == "tls" {
		cfg := opts.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", u.Host, err)
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	hello := attach.Hello{ID: id, Secret: secret, Framed: true, Rows: opts.Rows, Cols: opts.Cols}
	if _, err := io.WriteString(conn, hello.String()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send handshake: %w", err)
	}
	br := bufio.NewReader(conn)
	name, err := attach.ReadReply(br)
	if err != nil {
		conn.Close()
		var refused *attach.RefusedError
		if errors.As(err, &refused) {
			return nil, &Error{Code: refused.Code, Message: refused.Message}
		}
		return nil, err
	}
	return &Attachment{Name: name, conn: conn, r: attach.NewReader(br), w: attach.NewWriter(conn)}, nil
}

// Write sends bytes to the one-off's stdin.
func (a *Attachment) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := a.w.WriteFrame(attach.Stdin, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseStdin ends the one-off's stdin.
func (a *Attachment) CloseStdin() error { return a.w.WriteFrame(attach.CloseStdin, nil) }

// Resize tells the one-off's TTY the terminal's new size.
func (a *Attachment) Resize(rows, cols uint16) error {
	return a.w.WriteFrame(attach.Resize, attach.EncodeSize(rows, cols))
}

// Signal sends a signal, by name ("INT", "TERM", ...), to the one-off.
func (a *Attachment) Signal(name string) error {
	return a.w.WriteFrame(attach.Signal, []byte(name))
}

// Copy writes the one-off's output to stdout and stderr, and notices from
// the daemon to notices, until the one-off ends; it returns how it ended.
func (a *Attachment) Copy(stdout, stderr, notices io.Writer) (attach.ExitStatus, error) {
	for {
		t, p, err := a.r.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return attach.ExitStatus{}, ErrConnectionLost
			}
			return attach.ExitStatus{}, fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		switch t {
		case attach.Stdout:
			_, err = stdout.Write(p)
		case attach.Stderr:
			_, err = stderr.Write(p)
		case attach.Message:
			_, err = notices.Write(p)
		case attach.Exit:
			return attach.DecodeExit(p)
		}
		if err != nil {
			return attach.ExitStatus{}, fmt.Errorf("write output: %w", err)
		}
	}
}

// Close closes the connection; a one-off still running is then stopped.
func (a *Attachment) Close() error { return a.conn.Close() }
