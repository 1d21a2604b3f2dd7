package api

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxConns bounds the API's open connections by default.
const DefaultMaxConns = 1024

// ConnLimit is the API's listener with a cap on open connections. At the
// cap, a new connection makes room by closing the one idle the longest (a
// keep-alive connection between requests, or one that has sent nothing
// yet), as busy web servers reuse their keep-alive connections: idle peers
// cannot lock the API out. When none is idle, Accept waits for a
// connection to close. netutil.LimitListener only waits, which is what
// lets idle connections keep everyone else out.
//
// Pass its ConnState method as the http.Server's ConnState.
type ConnLimit struct {
	net.Listener
	max  int
	log  *slog.Logger
	slot chan struct{}
	// idled wakes an Accept waiting for a place when a connection goes idle.
	idled chan struct{}
	done  chan struct{}
	once  sync.Once

	mu    sync.Mutex
	conns map[*limitedConn]struct{}

	backoff backoff // used by Accept only, which net/http calls from one goroutine
	open    prometheus.GaugeFunc
	idle    prometheus.GaugeFunc
	shed    prometheus.Counter
	errors  prometheus.Counter
}

// NewConnLimit caps ln at max open connections (DefaultMaxConns if zero)
// and registers its metrics with reg when set.
func NewConnLimit(ln net.Listener, max int, log *slog.Logger, reg prometheus.Registerer) *ConnLimit {
	if max <= 0 {
		max = DefaultMaxConns
	}
	l := &ConnLimit{Listener: ln, max: max, log: log.With("listener", "api"), slot: make(chan struct{}, max),
		idled: make(chan struct{}, 1), done: make(chan struct{}), conns: map[*limitedConn]struct{}{}}
	l.backoff.log = l.log
	l.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "oneoffd_api_connections_open",
		Help: "Connections to the API open now.",
	}, func() float64 { return float64(len(l.slot)) })
	l.idle = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "oneoffd_api_connections_idle",
		Help: "API connections open now with no request under way: the first to be closed at the --api-max-conns cap.",
	}, func() float64 { return float64(l.idleCount()) })
	l.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oneoffd_api_connections_shed_total",
		Help: "Idle API connections closed to make room for a new one, at the --api-max-conns cap.",
	})
	l.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oneoffd_api_accept_errors_total",
		Help: "Temporary failures to accept an API connection (such as running out of file descriptors), retried after a back-off.",
	})
	if reg != nil {
		reg.MustRegister(l.open, l.idle, l.shed, l.errors)
	}
	return l
}

// Accept waits for a connection, making room for it at the cap.
func (l *ConnLimit) Accept() (net.Conn, error) {
	var c net.Conn
	for {
		var err error
		if c, err = l.Listener.Accept(); err == nil {
			break
		}
		// Retried here rather than by net/http, which would give up on
		// ENOBUFS and ENOMEM and end the daemon.
		if !temporaryAcceptError(err) {
			return nil, err
		}
		select {
		case <-l.done:
			return nil, err
		default:
		}
		l.errors.Inc()
		l.backoff.wait(err, l.done)
	}
	l.backoff.reset()
	select {
	case l.slot <- struct{}{}:
	default:
		if !l.shedIdlest() {
			l.log.Debug("at the connection cap with none idle: waiting for a place", "max_conns", l.max)
		}
	wait:
		for {
			select {
			case l.slot <- struct{}{}: // a place freed by the shed, first
				break wait
			default:
			}
			select {
			case l.slot <- struct{}{}:
				break wait
			case <-l.idled:
				l.shedIdlest()
			case <-l.done:
				_ = c.Close()
				return nil, net.ErrClosed
			}
		}
	}
	lc := &limitedConn{Conn: c, l: l, idleSince: time.Now()}
	l.mu.Lock()
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	return lc, nil
}

// Close stops the listener; connections already open go on.
func (l *ConnLimit) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// shedIdlest closes the connection idle the longest, if any is.
// idleCount says how many connections have no request under way.
func (l *ConnLimit) idleCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if !c.idleSince.IsZero() {
			n++
		}
	}
	return n
}

func (l *ConnLimit) shedIdlest() bool {
	l.mu.Lock()
	var idlest *limitedConn
	for c := range l.conns {
		if !c.idleSince.IsZero() && (idlest == nil || c.idleSince.Before(idlest.idleSince)) {
			idlest = c
		}
	}
	if idlest != nil {
		// Closed while still known idle: a request arriving now cannot
		// have started on it. Its place is given back below, unlocked.
		_ = idlest.Conn.Close()
	}
	l.mu.Unlock()
	if idlest == nil {
		return false
	}
	l.shed.Inc()
	_ = idlest.Close()
	return true
}

// ConnState follows the http.Server's connections, to know the idle ones.
func (l *ConnLimit) ConnState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch state {
	case http.StateNew, http.StateIdle:
		lc.idleSince = time.Now()
		select {
		case l.idled <- struct{}{}:
		default:
		}
	case http.StateActive, http.StateHijacked:
		lc.idleSince = time.Time{}
	}
}

// limitedConn holds a place under the cap until it closes.
type limitedConn struct {
	net.Conn
	l         *ConnLimit
	once      sync.Once
	idleSince time.Time // zero while a request is served; under l.mu
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.slot
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
