package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/oneoff"
)

// HandshakeTimeout bounds the time a client has to send its handshake.
const HandshakeTimeout = 10 * time.Second

// finishLinger is how long a connection stays open after the exit status
// was sent, so that the client reads it before the connection closes.
const finishLinger = 5 * time.Second

// signals lists the signals a client may send; others are refused.
var signals = map[string]bool{"INT": true, "TERM": true, "HUP": true, "QUIT": true, "USR1": true, "USR2": true}

// AttachServer is the attach endpoint: it checks a terminal's handshake and
// hands the connection to the one-off's session.
type AttachServer struct {
	oneoffs *oneoff.Manager
	log     *slog.Logger
	tls     *tls.Config

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewAttachServer returns an attach endpoint; tlsConfig may be nil.
func NewAttachServer(oneoffs *oneoff.Manager, log *slog.Logger, tlsConfig *tls.Config) *AttachServer {
	return &AttachServer{oneoffs: oneoffs, log: log, tls: tlsConfig, conns: map[net.Conn]struct{}{}}
}

// Serve accepts terminals on ln until Close.
func (a *AttachServer) Serve(ln net.Listener) error {
	if a.tls != nil {
		ln = tls.NewListener(ln, a.tls)
	}
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serve(c)
		}()
	}
}

// Close stops accepting terminals. Sessions under way go on; the Manager
// ends them.
func (a *AttachServer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln != nil {
		return a.ln.Close()
	}
	return nil
}

func (a *AttachServer) serve(c net.Conn) {
	log := a.log.With("client", c.RemoteAddr().String())
	_ = c.SetDeadline(time.Now().Add(HandshakeTimeout))
	br := bufio.NewReaderSize(c, 32<<10)
	hello, err := attach.ReadHello(br)
	if err != nil {
		log.Debug("bad attach handshake", "err", err)
		if errors.Is(err, attach.ErrBadHello) {
			_ = attach.WriteRefused(c, "bad_handshake", err.Error())
		}
		_ = c.Close()
		return
	}
	sess, err := a.oneoffs.Claim(context.Background(), hello.ID, hello.Secret, c.RemoteAddr().String())
	if err != nil {
		d := Detail(err)
		log.Info("attach refused", "oneoff", hello.ID, "code", d.Code)
		_ = attach.WriteRefused(c, d.Code, d.Message)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var conn oneoff.Conn
	if hello.Framed {
		if err := attach.WriteOK(c, sess.OneOff().Name); err != nil {
			log.Debug("write handshake reply failed", "err", err)
		}
		conn = newFramedConn(c, br)
	} else {
		conn = newRawConn(c, br)
	}
	res := sess.Run(context.Background(), conn, oneoff.TermSize{Rows: hello.Rows, Cols: hello.Cols})
	log.Debug("attach session ended", "oneoff", hello.ID, "app", sess.OneOff().App, "outcome", res.Outcome)
}

// inputs reads what a client sends on its own goroutine, so that the
// connection can linger after the end without a second reader.
type inputs struct {
	c    net.Conn
	in   chan oneoff.Input
	err  error // set before in is closed
	done chan struct{}

	mu       sync.Mutex
	finished bool
	ended    bool
}

func newInputs(c net.Conn) *inputs {
	return &inputs{c: c, in: make(chan oneoff.Input, 16), done: make(chan struct{})}
}

// run feeds in from read until it fails, then closes the connection if the
// session has already finished.
func (p *inputs) run(read func() (oneoff.Input, bool, error)) {
	for {
		in, ok, err := read()
		if err != nil {
			p.err = err
			break
		}
		if !ok {
			continue
		}
		select {
		case p.in <- in:
		case <-p.done:
		}
	}
	close(p.in)
	p.mu.Lock()
	p.ended = true
	finished := p.finished
	p.mu.Unlock()
	if finished {
		_ = p.c.Close()
	}
}

func (p *inputs) Next() (oneoff.Input, error) {
	in, ok := <-p.in
	if !ok {
		return oneoff.Input{}, p.err
	}
	return in, nil
}

// finish sends the last words with write, then half-closes the connection
// and lets it linger so that the client reads them.
func (p *inputs) finish(write func() error) {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.finished = true
	ended := p.ended
	p.mu.Unlock()
	close(p.done)
	// A client that stopped reading must not hold the session: bound the
	// write, which also unblocks one already stuck.
	_ = p.c.SetWriteDeadline(time.Now().Add(finishLinger))
	if write != nil {
		_ = write()
	}
	if cw, ok := p.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if ended {
		_ = p.c.Close()
		return
	}
	_ = p.c.SetReadDeadline(time.Now().Add(finishLinger))
}

// framedConn is a session's connection in framed mode.
type framedConn struct {
	*inputs
	w *attach.Writer
}

func newFramedConn(c net.Conn, br *bufio.Reader) *framedConn {
	fc := &framedConn{inputs: newInputs(c), w: attach.NewWriter(c)}
	r := attach.NewReader(br)
	go fc.run(func() (oneoff.Input, bool, error) {
		t, p, err := r.ReadFrame()
		if err != nil {
			return oneoff.Input{}, false, err
		}
		switch t {
		case attach.Stdin:
			return oneoff.Input{Kind: oneoff.InputData, Data: append([]byte(nil), p...)}, true, nil
		case attach.Resize:
			rows, cols, err := attach.DecodeSize(p)
			if err != nil {
				return oneoff.Input{}, false, nil
			}
			return oneoff.Input{Kind: oneoff.InputResize, Size: oneoff.TermSize{Rows: rows, Cols: cols}}, true, nil
		case attach.CloseStdin:
			return oneoff.Input{Kind: oneoff.InputCloseStdin}, true, nil
		case attach.Signal:
			if !signals[string(p)] {
				_ = fc.w.WriteFrame(attach.Message, []byte("oneoffd: signal "+string(p)+" is not forwarded\r\n"))
				return oneoff.Input{}, false, nil
			}
			return oneoff.Input{Kind: oneoff.InputSignal, Signal: string(p)}, true, nil
		}
		return oneoff.Input{}, false, nil // unknown frames are skipped, for newer clients
	})
	return fc
}

func (fc *framedConn) Stdout() io.Writer { return fc.w.StreamWriter(attach.Stdout) }
func (fc *framedConn) Stderr() io.Writer { return fc.w.StreamWriter(attach.Stderr) }

func (fc *framedConn) Notify(msg string) {
	_ = fc.w.WriteFrame(attach.Message, []byte(msg+"\r\n"))
}

func (fc *framedConn) Finish(res oneoff.Result) {
	fc.finish(func() error {
		return fc.w.WriteFrame(attach.Exit, attach.EncodeExit(attach.ExitStatus{
			Outcome: string(res.Outcome), ExitCode: res.ExitCode, Message: res.Message,
		}))
	})
}

// rawConn is a session's connection in raw mode: bytes in, bytes out, the
// client's half-close ending stdin, the connection's close ending it all.
type rawConn struct {
	*inputs
	mu sync.Mutex
	c  net.Conn
}

func newRawConn(c net.Conn, br *bufio.Reader) *rawConn {
	rc := &rawConn{inputs: newInputs(c), c: c}
	buf := make([]byte, 32<<10)
	eof := false
	go rc.run(func() (oneoff.Input, bool, error) {
		if eof {
			// stdin has ended; the client may still read: wait for the end.
			<-rc.done
			return oneoff.Input{}, false, io.EOF
		}
		n, err := br.Read(buf)
		if n > 0 {
			return oneoff.Input{Kind: oneoff.InputData, Data: append([]byte(nil), buf[:n]...)}, true, nil
		}
		if errors.Is(err, io.EOF) {
			eof = true
			return oneoff.Input{Kind: oneoff.InputCloseStdin}, true, nil
		}
		return oneoff.Input{}, false, err
	})
	return rc
}

func (rc *rawConn) Stdout() io.Writer { return rc }
func (rc *rawConn) Stderr() io.Writer { return rc }

func (rc *rawConn) Write(p []byte) (int, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.c.Write(p)
}

// Notify says nothing: the raw stream carries the container's bytes only.
func (rc *rawConn) Notify(string) {}

func (rc *rawConn) Finish(oneoff.Result) { rc.finish(nil) }
