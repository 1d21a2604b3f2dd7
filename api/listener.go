package api

import (
	"errors"
	"log/slog"
	"net"
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

// pendingLimit counts the connections that have not finished their
// handshake, overall and by client address.
type pendingLimit struct {
	max, perClient int

	mu       sync.Mutex
	total    int
	byClient map[string]int
}

// Why pendingLimit.admit refuses a connection; also the metric's label.
const (
	refusedPending          = "too_many_pending"
	refusedPendingPerClient = "too_many_pending_client"
)

// admit takes a place for a connection from client, or says why there is
// none.
func (p *pendingLimit) admit(client string) (refused string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.max > 0 && p.total >= p.max:
		return refusedPending
	case p.perClient > 0 && p.byClient[client] >= p.perClient:
		return refusedPendingPerClient
	}
	p.total++
	p.byClient[client]++
	return ""
}

// release gives back the place admit took.
func (p *pendingLimit) release(client string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.byClient[client]--; p.byClient[client] <= 0 {
		delete(p.byClient, client)
	}
}

// clientHost is the address a connection comes from, without the port.
func clientHost(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
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
