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

	"github.com/prometheus/client_golang/prometheus"

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

// signalRefused is the message frame that answers a signal not in signals.
const signalRefused = "oneoffd: that signal is not forwarded: send INT, TERM, HUP, QUIT, USR1 or USR2\r\n"

// Defaults of AttachConfig.
const (
	// DefaultAttachMaxPending bounds the connections that have not finished
	// their handshake.
	DefaultAttachMaxPending = 256
	// DefaultAttachMaxPendingPerClient bounds them per client address.
	DefaultAttachMaxPendingPerClient = 16
	// DefaultAttachKeepAlive is the idle time before keepalive probes.
	DefaultAttachKeepAlive = 15 * time.Second
)

// AttachConfig tunes the AttachServer.
type AttachConfig struct {
	// TLS, when set, is spoken on every connection.
	TLS *tls.Config
	// MaxPending bounds the connections that have not finished their
	// handshake, and MaxPendingPerClient those from one address; more are
	// refused at once. DefaultAttachMaxPending and
	// DefaultAttachMaxPendingPerClient when zero; negative means no bound.
	MaxPending, MaxPendingPerClient int
	// KeepAlive is the idle time after which TCP keepalive probes a
	// connection, every KeepAlive, three times: a vanished peer is noticed
	// in four times KeepAlive. DefaultAttachKeepAlive when zero; negative
	// turns keepalive off.
	KeepAlive time.Duration
	// Metrics registers the endpoint's metrics when set.
	Metrics prometheus.Registerer
}

// AttachServer is the attach endpoint: it checks a terminal's handshake and
// hands the connection to the one-off's session.
type AttachServer struct {
	oneoffs   *oneoff.Manager
	log       *slog.Logger
	tls       *tls.Config
	keepAlive time.Duration
	pending   pendingLimit
	met       attachMetrics
	refusals  rateLimit

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup
}

// attachMetrics are the endpoint's Prometheus metrics.
type attachMetrics struct {
	pending      prometheus.Gauge
	refused      *prometheus.CounterVec
	acceptErrors prometheus.Counter
}

// NewAttachServer returns an attach endpoint.
func NewAttachServer(oneoffs *oneoff.Manager, log *slog.Logger, cfg AttachConfig) *AttachServer {
	limit := func(v, def int) int {
		if v == 0 {
			return def
		}
		return max(v, 0)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultAttachKeepAlive
	}
	a := &AttachServer{oneoffs: oneoffs, log: log, tls: cfg.TLS, keepAlive: cfg.KeepAlive, done: make(chan struct{}),
		pending: pendingLimit{
			max:       limit(cfg.MaxPending, DefaultAttachMaxPending),
			perClient: limit(cfg.MaxPendingPerClient, DefaultAttachMaxPendingPerClient),
			byClient:  map[string][]net.Conn{},
		},
		met: attachMetrics{
			pending: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "oneoffd_attach_pending_connections",
				Help: "Connections to the attach endpoint that have not finished their handshake.",
			}),
			refused: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "oneoffd_attach_connections_refused_total",
				Help: "Connections to the attach endpoint turned away before their handshake, by reason: too many pending overall or from one client, or evicted to make room for another client's.",
			}, []string{"reason"}),
			acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "oneoffd_attach_accept_errors_total",
				Help: "Temporary failures to accept an attach connection (such as running out of file descriptors), retried after a back-off.",
			}),
		},
	}
	for _, why := range []string{refusedPending, refusedPendingPerClient, refusedEvicted} {
		a.met.refused.WithLabelValues(why)
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(a.met.pending, a.met.refused, a.met.acceptErrors)
	}
	return a
}

// Serve accepts terminals on ln until Close. Temporary accept errors, such
// as running out of file descriptors, are retried after a back-off; only
// ln failing for good ends Serve with an error.
func (a *AttachServer) Serve(ln net.Listener) error {
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	bo := backoff{log: a.log.With("listener", "attach")}
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-a.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if temporaryAcceptError(err) {
				a.met.acceptErrors.Inc()
				bo.wait(err, a.done)
				continue
			}
			return err
		}
		bo.reset()
		client := clientHost(c.RemoteAddr())
		why, evicted := a.pending.admit(client, c)
		if why != "" {
			a.refuse(c, client, why)
			continue
		}
		if evicted != nil {
			// Its handshake fails on the close and its goroutine ends.
			a.refuse(evicted, clientHost(evicted.RemoteAddr()), refusedEvicted)
			a.met.pending.Dec()
		}
		a.met.pending.Inc()
		if err := setKeepAlive(c, a.keepAlive); err != nil {
			a.log.Debug("set keepalive failed", "client", c.RemoteAddr().String(), "err", err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serve(c, client)
		}()
	}
}

// refuse turns away a connection over the pending caps at once: a refusal
// line when it is cheap (plain TCP, whose fresh socket takes it without
// blocking), then the close.
func (a *AttachServer) refuse(c net.Conn, client, why string) {
	a.met.refused.WithLabelValues(why).Inc()
	if ok, skipped := a.refusals.allow(); ok {
		a.log.Warn("attach connection refused: too many handshakes under way", "client", client, "reason", why,
			"max_pending", a.pending.max, "max_pending_per_client", a.pending.perClient, "refusals_not_logged", skipped)
	}
	if a.tls == nil {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		msg := "too many connections are in their handshake; try again shortly"
		if why == refusedEvicted {
			msg = "the handshake did not come in time for the connections waiting; try again"
		}
		_ = attach.WriteRefused(c, why, msg)
	}
	_ = c.Close()
}

// Close stops accepting terminals. Sessions under way go on; the Manager
// ends them.
func (a *AttachServer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.done:
	default:
		close(a.done)
	}
	if a.ln != nil {
		return a.ln.Close()
	}
	return nil
}

func (a *AttachServer) serve(c net.Conn, client string) {
	// The connection holds a pending place until its handshake line is in;
	// release reports whether it still held one, or was evicted.
	raw, held := c, false
	var releaseOnce sync.Once
	release := func() bool {
		releaseOnce.Do(func() {
			if held = a.pending.release(client, raw); held {
				a.met.pending.Dec()
			}
		})
		return held
	}
	defer release()
	log := a.log.With("client", c.RemoteAddr().String())
	if a.tls != nil {
		c = tls.Server(c, a.tls)
	}
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
	if !release() {
		_ = c.Close() // evicted as the line came in
		return
	}
	a.handshake(c, br, hello, log)
}

// handshake answers a terminal's handshake line and runs its session.
func (a *AttachServer) handshake(c net.Conn, br *bufio.Reader, hello attach.Hello, log *slog.Logger) {
	if hello.Resume {
		a.resume(c, br, hello, log)
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
	rec := sess.OneOff()
	var conn oneoff.Conn
	if hello.Framed {
		fc := newFramedConn(c, br)
		conn = fc
		token := ""
		if hello.Resumable {
			conn, token = sess.Resumable(fc)
		}
		if err := attach.WriteAccept(c, attach.Accept{Name: rec.Name, Token: token}); err != nil {
			log.Debug("write handshake reply failed", "err", err)
		}
	} else {
		conn = newRawConn(c, br, rec.TTY)
	}
	res := sess.Run(context.Background(), conn, oneoff.TermSize{Rows: hello.Rows, Cols: hello.Cols})
	log.Debug("attach session ended", "oneoff", hello.ID, "app", rec.App, "outcome", res.Outcome)
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

// inputQueue is how many inputs wait between the connection and the
// session: with the one the reader holds and the one being written, at most
// three reads (32 KiB each in raw mode, a frame in framed mode) are in the
// daemon; past that it stops reading and TCP pushes back on the client.
const inputQueue = 1

func newInputs(c net.Conn) *inputs {
	return &inputs{c: c, in: make(chan oneoff.Input, inputQueue), done: make(chan struct{})}
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
		case attach.Ack:
			n, err := attach.DecodeAck(p)
			return oneoff.Input{Kind: oneoff.InputAck, Offset: n}, err == nil, nil
		case attach.Signal:
			if !signals[string(p)] {
				// The payload is the client's: it is not sent back, so the
				// daemon never writes what a client made up to a terminal.
				_ = fc.w.WriteFrame(attach.Message, []byte(signalRefused))
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

// rawConn is a session's connection in raw mode: bytes in, bytes out. With
// a TTY there is no end of input on the wire (Ctrl-D is a byte the
// terminal sends), so the client's EOF means the terminal is gone and ends
// the session; without one, the client's half-close ends stdin and the
// session goes on until the command ends or a write to the client fails.
type rawConn struct {
	*inputs
	mu sync.Mutex
	c  net.Conn
}

func newRawConn(c net.Conn, br *bufio.Reader, tty bool) *rawConn {
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
		if errors.Is(err, io.EOF) && !tty {
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
