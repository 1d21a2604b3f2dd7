package logs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// Defaults for a DrainConfig's zero fields.
const (
	DefaultDrainBufferLines = 10000
	DefaultDrainMinBackoff  = 100 * time.Millisecond
	DefaultDrainMaxBackoff  = 30 * time.Second
	DefaultDrainDialTimeout = 10 * time.Second
)

const (
	// drainBatchLines bounds how many lines go out in one write.
	drainBatchLines = 500
	// drainWriteTimeout bounds one batch's write; a server that takes longer is
	// treated as gone.
	drainWriteTimeout = 30 * time.Second
	// drainAliveProbe is how long the liveness check waits for the connection to
	// report EOF or an error. An already passed deadline would not do: Go
	// then fails the read without asking the socket.
	drainAliveProbe = time.Millisecond
	// drainIdleCheck is how often an idle connection is checked, so that
	// Stats tells the truth and a lost connection is replaced early.
	drainIdleCheck = 2 * time.Second
	// drainDropWarnEvery rate-limits the warning about dropped lines.
	drainDropWarnEvery = 5 * time.Second
	// drainFlushTimeout bounds the last attempt to send what is left when Run's
	// context ends.
	drainFlushTimeout = 2 * time.Second
)

// DrainConfig configures a SyslogDrain.
type DrainConfig struct {
	// URL is syslog+tls://host:port, syslog+tcp://host:port or
	// syslog://host:port (TCP).
	URL string
	// TLS is the client configuration for syslog+tls, such as the roots to
	// trust; its ServerName defaults to the URL's host.
	TLS *tls.Config
	// BufferLines bounds the lines waiting to be sent; past it the oldest
	// are dropped. Default DefaultDrainBufferLines.
	BufferLines int
	// Hostname is the messages' HOSTNAME field. Default os.Hostname().
	Hostname string
	// Logger receives the drain's warnings. Default: discard.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts. Defaults DefaultDrainMinBackoff and DefaultDrainMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connection attempt, TLS handshake included.
	// Default DefaultDrainDialTimeout.
	DialTimeout time.Duration
	// Allow lists the internal networks the drain may reach nonetheless;
	// any other loopback, link-local, private, multicast or unspecified
	// address is refused, in the URL and when dialling.
	Allow DrainAllow
}

// SyslogDrain forwards lines to a syslog server over TCP or TLS, as RFC 5424
// messages with octet-counted framing. Delivery is at least once, within
// the limits of a bounded buffer: see Run.
type SyslogDrain struct {
	url      drainURL
	allow    DrainAllow
	tls      *tls.Config
	hostname string
	minWait  time.Duration
	maxWait  time.Duration
	dialWait time.Duration
	log      *slog.Logger

	wake chan struct{} // has a token when lines were enqueued

	mu   sync.Mutex
	ring []Line // the buffer, len(ring) == BufferLines
	head int    // index in ring of the oldest line
	n    int    // lines in ring
	// removed counts lines ever removed from the front of the buffer, sent or
	// dropped, so that the line at head has sequence number removed.
	removed     uint64
	stats       DrainStats
	dropPending uint64 // dropped lines not yet warned about
	dropWarned  time.Time
}

// NewSyslogDrain returns a drain for cfg; it sends nothing until Run.
func NewSyslogDrain(cfg DrainConfig) (*SyslogDrain, error) {
	u, err := parseDrainURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if err := checkDrainHost(u.redacted, u.host, cfg.Allow); err != nil {
		return nil, err
	}
	d := &SyslogDrain{
		url:      u,
		allow:    cfg.Allow,
		hostname: cfg.Hostname,
		minWait:  cfg.MinBackoff,
		maxWait:  cfg.MaxBackoff,
		dialWait: cfg.DialTimeout,
		log:      cfg.Logger,
		wake:     make(chan struct{}, 1),
	}
	size := cfg.BufferLines
	if size <= 0 {
		size = DefaultDrainBufferLines
	}
	d.ring = make([]Line, size)
	if d.hostname == "" {
		d.hostname, _ = os.Hostname()
	}
	if d.minWait <= 0 {
		d.minWait = DefaultDrainMinBackoff
	}
	if d.maxWait <= 0 {
		d.maxWait = DefaultDrainMaxBackoff
	}
	d.maxWait = max(d.maxWait, d.minWait)
	if d.dialWait <= 0 {
		d.dialWait = DefaultDrainDialTimeout
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("drain", u.redacted)
	if u.tls {
		if cfg.TLS != nil {
			d.tls = cfg.TLS.Clone()
		} else {
			d.tls = &tls.Config{}
		}
		if d.tls.ServerName == "" {
			d.tls.ServerName = u.host
		}
		if d.tls.MinVersion == 0 {
			d.tls.MinVersion = tls.VersionTLS12
		}
	}
	return d, nil
}

// URL returns the drain's URL without credentials.
func (d *SyslogDrain) URL() string { return d.url.redacted }

// Stats returns the drain's counts.
func (d *SyslogDrain) Stats() DrainStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Buffered = d.n
	return s
}

// Enqueue adds lines to the buffer without blocking. When the buffer is
// full the oldest lines make room: they are dropped, counted, and warned
// about at most every few seconds.
func (d *SyslogDrain) Enqueue(lines []Line) {
	if len(lines) == 0 {
		return
	}
	d.mu.Lock()
	var dropped uint64
	if extra := len(lines) - len(d.ring); extra > 0 {
		// Only the newest len(ring) lines can stay.
		dropped += uint64(extra)
		lines = lines[extra:]
	}
	for _, l := range lines {
		if d.n == len(d.ring) {
			d.popLocked(1)
			dropped++
		}
		d.ring[(d.head+d.n)%len(d.ring)] = l
		d.n++
	}
	d.stats.Dropped += dropped
	d.dropPending += dropped
	warn := d.takeDropWarningLocked()
	d.mu.Unlock()
	if warn > 0 {
		d.warnDropped(warn)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// popLocked removes the n oldest lines.
func (d *SyslogDrain) popLocked(n int) {
	for range n {
		d.ring[d.head] = Line{} // let the text go
		d.head = (d.head + 1) % len(d.ring)
	}
	d.n -= n
	d.removed += uint64(n)
}

// takeDropWarningLocked returns how many dropped lines to warn about now,
// zero if none or if the last warning is too recent.
func (d *SyslogDrain) takeDropWarningLocked() uint64 {
	if d.dropPending == 0 || time.Since(d.dropWarned) < drainDropWarnEvery {
		return 0
	}
	n := d.dropPending
	d.dropPending = 0
	d.dropWarned = time.Now()
	return n
}

func (d *SyslogDrain) warnDropped(n uint64) {
	d.log.Warn("drain buffer full: dropped the oldest lines", "dropped", n, "buffer_lines", len(d.ring))
}

// peek returns a copy of up to max of the oldest lines and the sequence
// number of the first, leaving them in the buffer.
func (d *SyslogDrain) peek(max int) ([]Line, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(max, d.n)
	batch := make([]Line, n)
	for i := range batch {
		batch[i] = d.ring[(d.head+i)%len(d.ring)]
	}
	return batch, d.removed
}

// commit removes a written batch that started at sequence number first,
// minus any of its lines that overflow already dropped.
func (d *SyslogDrain) commit(first uint64, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if end := first + uint64(n); end > d.removed {
		d.popLocked(min(int(end-d.removed), d.n))
	}
}

// buffered returns how many lines wait in the buffer.
func (d *SyslogDrain) buffered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// count records a batch of sent lines written, or a failure with its cause.
func (d *SyslogDrain) count(sent int, failure error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Sent += uint64(sent)
	if failure == nil {
		d.stats.FailingSince = time.Time{}
		return
	}
	now := time.Now()
	d.stats.Errors++
	d.stats.LastError, d.stats.LastErrorAt = failure.Error(), now
	if d.stats.FailingSince.IsZero() {
		d.stats.FailingSince = now
	}
}

func (d *SyslogDrain) setConnected(c bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Connected = c
}

// Run sends the buffered lines until ctx is done, connecting and
// reconnecting as needed, with exponential backoff and jitter between
// MinBackoff and MaxBackoff after failures.
//
// Delivery is at least once. A batch leaves the buffer only once written.
// Since a write to a peer that has already gone can still succeed, the
// connection is checked before each batch (and now and then while idle),
// and the last batch written on a connection found dead or failing is
// resent first on the next one. Duplicates are possible; losses are not,
// but for lines dropped from a full buffer and for what TCP had accepted
// before that last batch when the server went away.
//
// When ctx is done Run makes one short last attempt to send what is left,
// then returns.
func (d *SyslogDrain) Run(ctx context.Context) {
	s := drainSender{d: d}
	defer s.close()
	idle := time.NewTicker(drainIdleCheck)
	defer idle.Stop()
	for ctx.Err() == nil {
		if len(s.resend) == 0 && d.buffered() == 0 {
			select {
			case <-ctx.Done():
			case <-d.wake:
			case <-idle.C:
				s.checkIdle()
				d.mu.Lock()
				warn := d.takeDropWarningLocked()
				d.mu.Unlock()
				if warn > 0 {
					d.warnDropped(warn)
				}
			}
			continue
		}
		if s.conn == nil && s.failures > 0 {
			if !drainSleep(ctx, d.backoff(s.failures)) {
				break
			}
		}
		s.sendBatch(ctx)
	}
	d.flush(&s)
}

// flush makes the last attempt to send what is left, within drainFlushTimeout.
func (d *SyslogDrain) flush(s *drainSender) {
	if len(s.resend) == 0 && d.buffered() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainFlushTimeout)
	defer cancel()
	for ctx.Err() == nil && (len(s.resend) > 0 || d.buffered() > 0) {
		if !s.sendBatch(ctx) {
			break
		}
	}
	if n := d.buffered(); n > 0 {
		d.log.Warn("drain stopped with lines unsent", "unsent", n)
	}
}

// drainSender is Run's state: the connection and what it must resend.
type drainSender struct {
	d        *SyslogDrain
	conn     net.Conn
	failures int    // consecutive failures, for the backoff
	last     []Line // the last batch written on conn
	resend   []Line // written on a connection that died: send first
	scratch  []byte
}

// sendBatch connects if need be, checks the connection and writes one
// batch. It reports whether the batch was written.
func (s *drainSender) sendBatch(ctx context.Context) bool {
	d := s.d
	if s.conn == nil {
		conn, err := d.dial(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.fail("connect failed", err)
			}
			return false
		}
		s.conn = conn
		d.setConnected(true)
		if s.failures > 0 {
			d.log.Info("drain connected", "after_failures", s.failures)
		}
	}
	if err := connAlive(s.conn); err != nil {
		s.lost("connection found closed", err)
		return false
	}
	batch, first, fromBuffer := s.resend, uint64(0), false
	if len(batch) == 0 {
		batch, first = d.peek(drainBatchLines)
		fromBuffer = true
	}
	if len(batch) == 0 {
		return true
	}
	s.scratch = s.scratch[:0]
	for _, l := range batch {
		s.scratch = appendSyslogFrame(s.scratch, d.hostname, l)
	}
	if err := drainWrite(ctx, s.conn, s.scratch); err != nil {
		if ctx.Err() != nil {
			// Stopping, not failing: the batch stays for the last flush.
			// The connection was alive, so what it carried before is in.
			s.close()
			s.last = nil
			return false
		}
		s.lost("write failed", err)
		return false
	}
	if fromBuffer {
		d.commit(first, len(batch))
	} else {
		s.resend = nil
	}
	s.last = batch
	s.failures = 0
	d.count(len(batch), nil)
	return true
}

// checkIdle checks an idle connection and lets go of it if it is dead.
func (s *drainSender) checkIdle() {
	if s.conn == nil {
		return
	}
	if err := connAlive(s.conn); err != nil {
		s.lost("idle connection found closed", err)
	}
}

// fail records a failure that leaves no connection.
func (s *drainSender) fail(what string, err error) {
	s.failures++
	s.d.count(0, fmt.Errorf("%s: %w", what, err))
	s.d.log.Warn("drain "+what, "err", err, "failures", s.failures,
		"buffered", s.d.buffered())
}

// lost closes a connection that failed; the last batch written on it may
// not have arrived, so it is to be resent.
func (s *drainSender) lost(what string, err error) {
	s.close()
	s.resend = append(s.last, s.resend...)
	s.last = nil
	s.fail(what, err)
}

func (s *drainSender) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
		s.d.setConnected(false)
	}
}

// dial connects to the server, with the TLS handshake for syslog+tls.
func (d *SyslogDrain) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialWait)
	defer cancel()
	// Checked where the address is known for sure: the name in the URL
	// may resolve elsewhere than it did when the drain was set.
	nd := &net.Dialer{Control: drainControl(d.allow)}
	if d.url.tls {
		td := &tls.Dialer{NetDialer: nd, Config: d.tls}
		return td.DialContext(ctx, "tcp", d.url.addr)
	}
	return nd.DialContext(ctx, "tcp", d.url.addr)
}

// backoff returns the wait before the next attempt after failures
// consecutive failures: doubling from MinBackoff up to MaxBackoff, less a
// random part of up to a half, never under MinBackoff.
func (d *SyslogDrain) backoff(failures int) time.Duration {
	wait := d.minWait
	for i := 1; i < failures && wait < d.maxWait; i++ {
		wait *= 2
	}
	wait = min(wait, d.maxWait)
	wait -= rand.N(wait/2 + 1)
	return max(wait, d.minWait)
}

// connAlive reports, as a nil error, whether conn is still open: a read that
// times out at once means the peer has not closed it (a syslog server sends
// nothing), while EOF or any other error means it is gone.
func connAlive(conn net.Conn) error {
	if err := conn.SetReadDeadline(time.Now().Add(drainAliveProbe)); err != nil {
		return err
	}
	var buf [512]byte
	_, err := conn.Read(buf[:])
	if reset := conn.SetReadDeadline(time.Time{}); reset != nil && err == nil {
		err = reset
	}
	var ne net.Error
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// drainWrite writes b to conn within drainWriteTimeout, giving up when ctx is done.
func drainWrite(ctx context.Context, conn net.Conn, b []byte) error {
	deadline := time.Now().Add(drainWriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	_, err := conn.Write(b)
	return err
}

// drainSleep waits for d or until ctx is done, and reports whether the whole
// wait passed.
func drainSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
