package api

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
)

// The accept loop's back-off after a temporary error, as net/http's.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// logEvery bounds how often a listener logs a repeated failure.
const logEvery = 5 * time.Second

// keepAliveProbes is how many unanswered keepalive probes end a connection.
const keepAliveProbes = 3

// temporaryAcceptError reports whether a failed Accept may succeed if tried
// again: the process or the system is out of descriptors or memory, or a
// client gave up before it was accepted.
func temporaryAcceptError(err error) bool {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED:
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// backoff spaces out the retries of a failing Accept and logs them at a
// bounded rate.
type backoff struct {
	log   *slog.Logger
	delay time.Duration
	every rateLimit
}

// wait sleeps before the next Accept, or until done is closed.
func (b *backoff) wait(err error, done <-chan struct{}) {
	if b.delay == 0 {
		b.delay = acceptBackoffMin
	} else {
		b.delay = min(2*b.delay, acceptBackoffMax)
	}
	if ok, skipped := b.every.allow(); ok {
		b.log.Warn("accept failed; retrying", "err", err, "retry_in", b.delay, "failures_not_logged", skipped)
	}
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// reset forgets past failures after an Accept succeeds.
func (b *backoff) reset() { b.delay = 0 }

// rateLimit lets an event through at most once per logEvery.
type rateLimit struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

// allow reports whether the event may be logged now, and how many were
// held back since the last one that was.
func (r *rateLimit) allow() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.last) >= logEvery {
		n := r.skipped
		r.last, r.skipped = now, 0
		return true, n
	}
	r.skipped++
	return false, 0
}

// pendingLimit keeps the connections that have not finished their
// handshake, overall and by client address. When the overall cap is
// reached, the newest connection of a client with a single one still gets
// in, in place of the oldest of the client holding the most: many
// addresses each under the per-client cap cannot lock out everyone else.
type pendingLimit struct {
	max, perClient int

	mu       sync.Mutex
	total    int
	byClient map[string][]net.Conn // oldest first
}

// Why pendingLimit.admit turns a connection away; also the metric's label.
const (
	refusedPending          = "too_many_pending"
	refusedPendingPerClient = "too_many_pending_client"
	// refusedEvicted is an older pending connection closed to make room.
	refusedEvicted = "evicted"
)

// admit takes a place for c from client, or says why there is none. It may
// make the place by evicting another client's oldest connection, which
// the caller closes; that one's release is then a no-op.
func (p *pendingLimit) admit(client string, c net.Conn) (refused string, evicted net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mine := len(p.byClient[client])
	if p.perClient > 0 && mine >= p.perClient {
		return refusedPendingPerClient, nil
	}
	if p.max > 0 && p.total >= p.max {
		heaviest := ""
		for cl, conns := range p.byClient {
			if len(conns) > len(p.byClient[heaviest]) {
				heaviest = cl
			}
		}
		if len(p.byClient[heaviest]) <= mine+1 {
			return refusedPending, nil // as fair as it gets
		}
		evicted = p.byClient[heaviest][0]
		p.removeLocked(heaviest, evicted)
	}
	p.total++
	p.byClient[client] = append(p.byClient[client], c)
	return "", evicted
}

// release gives back the place admit took for c, and reports whether it
// still held one (an evicted connection does not).
func (p *pendingLimit) release(client string, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.removeLocked(client, c)
}

func (p *pendingLimit) removeLocked(client string, c net.Conn) bool {
	conns := p.byClient[client]
	i := slices.Index(conns, c)
	if i < 0 {
		return false
	}
	p.total--
	if conns = slices.Delete(conns, i, i+1); len(conns) == 0 {
		delete(p.byClient, client)
	} else {
		p.byClient[client] = conns
	}
	return true
}

// clientHost is the client a connection counts against: its IPv4 address,
// or the /64 of its IPv6 address, which one host usually holds whole.
func clientHost(a net.Addr) string {
	var ip net.IP
	if ta, ok := a.(*net.TCPAddr); ok {
		ip = ta.IP
	} else if host, _, err := net.SplitHostPort(a.String()); err == nil {
		ip = net.ParseIP(host)
	}
	switch {
	case ip == nil:
		return a.String()
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// setKeepAlive turns on TCP keepalive on c, probing after idle of quiet
// and every idle after that, so that a peer gone without a word is noticed
// after about (1+keepAliveProbes)×idle. The same bound is put on data the
// peer leaves unacknowledged (TCP_USER_TIMEOUT), so that output to a
// vanished terminal does not retransmit for a quarter of an hour. A zero
// or negative idle turns keepalive off.
func setKeepAlive(c net.Conn, idle time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if idle <= 0 {
		return tc.SetKeepAlive(false)
	}
	if err := tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle, Interval: idle, Count: keepAliveProbes}); err != nil {
		return err
	}
	return setUserTimeout(tc, (1+keepAliveProbes)*idle)
}
