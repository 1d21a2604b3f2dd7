package oneoff

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// DefaultReplayBuffer is the output a resumable session keeps until its
// terminal acknowledges it.
const DefaultReplayBuffer = 4 << 20

// FromLive is the offset of a resume that wants the output from now on.
const FromLive = -1

// replayChunk is the size past which output starts a new chunk.
const replayChunk = 32 << 10

// Abandoner is a Conn that can be dropped without the end of the session:
// a resumable session closes with it the connection that went away or that
// another terminal took over, telling its user why when msg is not empty.
type Abandoner interface {
	Abandon(msg string)
}

// errTerminalGone ends a resumable session's input when nobody came back.
var errTerminalGone = errors.New("the terminal went away and did not come back")

// resumable is the Conn a session sees when its terminal can reconnect. It
// numbers the output, keeps what the terminal has not acknowledged yet (at
// most limit bytes: past that the container's output waits), and sends it
// to whichever connection is plugged in, from the offset that connection
// has received, on a goroutine of that connection's own: a connection that
// stops reading holds up nothing but itself. The session sees no
// disconnection until nobody came back within the grace.
type resumable struct {
	m     *Manager
	h     *handle
	grace time.Duration
	limit int64

	mu    sync.Mutex
	cond  *sync.Cond
	token [sha256.Size]byte
	cur   *plugged
	// lost is the connection last lost, while no other is plugged in; see
	// accepts.
	lost   *plugged
	chunks []replayChunkData
	start  int64 // offset of chunks[0]'s first byte
	end    int64 // offset after the last byte
	final  *Result
	dead   bool // nobody came back within the grace, or the end was told and the grace passed
	timer  *time.Timer
}

type replayChunkData struct {
	stderr bool
	p      []byte
}

// plugged is one connection of a resumable session.
type plugged struct {
	conn Conn
	// out and errw are conn's writers.
	out, errw io.Writer
	sent      int64 // the offset up to which it was sent output
	// resumedWith is the hash of the token it resumed with, if it did;
	// spoke says it has sent something since, so it read the reply that
	// carried its next token.
	resumedWith *[sha256.Size]byte
	spoke       bool
}

func newPlugged(conn Conn, from int64) *plugged {
	return &plugged{conn: conn, out: conn.Stdout(), errw: conn.Stderr(), sent: from}
}

// Resumable turns the session's connection into one that survives its
// loss for the Manager's ReconnectGrace, and returns the Conn to Run with
// and the resume token for the terminal's first reconnect. With no grace
// configured it returns conn itself and no token.
func (s *Session) Resumable(conn Conn) (Conn, string) {
	m := s.m
	if m.cfg.ReconnectGrace <= 0 {
		return conn, ""
	}
	limit := int64(m.cfg.ReplayBuffer)
	if limit <= 0 {
		limit = DefaultReplayBuffer
	}
	r := &resumable{m: m, h: s.h, grace: m.cfg.ReconnectGrace, limit: limit}
	r.cond = sync.NewCond(&r.mu)
	token := r.rotate()
	r.cur = newPlugged(conn, 0)
	m.resumes.Store(s.h.id, r)
	go r.send(r.cur)
	return r, token
}

// rotate issues a new resume token, the previous one refused from then on.
func (r *resumable) rotate() string {
	token := randomString(32)
	r.token = sha256.Sum256([]byte(token))
	return token
}

// Rejoin issues a new resume token for one-off id's terminal, for a second
// terminal to take the session over (oneoff attach); the current
// connection is closed when the new one comes in, and its own token is
// refused from now on.
func (m *Manager) Rejoin(ctx context.Context, id, actor string) (OneOff, string, error) {
	v, ok := m.resumes.Load(id)
	if !ok {
		rec, err := m.Get(ctx, id)
		if err != nil {
			return OneOff{}, "", err
		}
		return rec, "", errdefs.Conflict("not_resumable", "one-off %s has no terminal to rejoin (%s): only an attached one-off started with a resumable terminal can be rejoined", rec.Name, describe(rec))
	}
	r := v.(*resumable)
	r.mu.Lock()
	if r.dead || r.final != nil {
		r.mu.Unlock()
		rec := r.h.snapshot()
		return rec, "", errdefs.Conflict("not_resumable", "one-off %s is ending: there is no terminal to rejoin", rec.Name)
	}
	token := r.rotate()
	// The tokens before are refused from now on.
	r.lost = nil
	if r.cur != nil {
		r.cur.resumedWith = nil
	}
	r.mu.Unlock()
	rec := r.h.snapshot()
	m.audit(rec, AuditAttach, actor, "terminal taken over from another one")
	return rec, token, nil
}

// Resume plugs conn into one-off id's resumable session, if token is its
// current resume token: accept is called with the one-off's name and the
// next token before any output is sent to conn, then the output from
// offset from (the count of output bytes the terminal received, or
// FromLive) follows.
func (m *Manager) Resume(ctx context.Context, id, token string, from int64, client string, conn Conn, accept func(name, token string) error) error {
	v, ok := m.resumes.Load(id)
	if !ok {
		if _, err := m.Get(ctx, id); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return errdefs.NotFound("oneoff_not_found", "one-off %q does not exist", id)
			}
			return err
		}
		return errdefs.Conflict("resume_expired", "one-off %s can no longer be resumed: it ended, or nobody came back within the reconnect grace", id)
	}
	r := v.(*resumable)
	hash := sha256.Sum256([]byte(token))
	r.mu.Lock()
	if !r.accepts(hash) {
		r.mu.Unlock()
		return errdefs.Unauthorized("wrong_resume_token", "the resume token is not the one-off's current one: it was replaced at a reconnect or by oneoff attach")
	}
	if r.dead {
		r.mu.Unlock()
		return errdefs.Conflict("resume_expired", "one-off %s can no longer be resumed: nobody came back within the reconnect grace", id)
	}
	if from == FromLive {
		from = r.end
	}
	if from < r.start || from > r.end {
		have := fmt.Sprintf("%d to %d", r.start, r.end)
		r.mu.Unlock()
		return errdefs.Invalid("bad_resume_offset", "cannot resume from byte %d: the session holds bytes %s", from, have)
	}
	// The new token replaces the old one only once the reply carrying it
	// is sent: a reply that cannot be sent leaves the old one good.
	next := randomString(32)
	if err := accept(r.h.snapshot().Name, next); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("accept reconnect: %w", err)
	}
	r.token = sha256.Sum256([]byte(next))
	r.forget(from)
	old := r.cur
	p := newPlugged(conn, from)
	p.resumedWith = &hash
	r.cur, r.lost = p, nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.cond.Broadcast()
	r.mu.Unlock()
	if old != nil {
		abandon(old.conn, "oneoffd: another terminal took this session over")
	}
	m.audit(r.h.snapshot(), AuditAttach, ActorDaemon, "terminal reconnected from "+client)
	go r.send(p)
	return nil
}

// accepts reports whether a resume token of hash may plug a terminal in:
// the current token, or, while no connection is plugged in, the one the
// connection last lost resumed with if it went before it spoke: the reply
// that carried its next token may have been lost with it. A terminal
// speaks (acknowledges) as soon as it has read the reply; from then on, or
// once another connection is plugged in, only the current token is good.
func (r *resumable) accepts(hash [sha256.Size]byte) bool {
	if subtle.ConstantTimeCompare(hash[:], r.token[:]) == 1 {
		return true
	}
	l := r.lost
	return r.cur == nil && l != nil && !l.spoke && l.resumedWith != nil &&
		subtle.ConstantTimeCompare(hash[:], l.resumedWith[:]) == 1
}

// abandon closes c on a goroutine of its own: a close may wait for the
// peer (a WebSocket's closing handshake), and the output must not.
func abandon(c Conn, msg string) {
	if a, ok := c.(Abandoner); ok {
		go a.Abandon(msg)
	}
}

// forget drops the output up to offset n, which the terminal has.
func (r *resumable) forget(n int64) {
	for len(r.chunks) > 0 && r.start < n {
		c := &r.chunks[0]
		if k := n - r.start; k < int64(len(c.p)) {
			c.p = c.p[k:]
			r.start = n
			break
		}
		r.start += int64(len(c.p))
		r.chunks[0] = replayChunkData{}
		r.chunks = r.chunks[1:]
	}
	r.cond.Broadcast()
}

// send sends p the output from its offset on, as it comes, for as long as
// p is the connection plugged in, then the end once it came. Only this
// goroutine writes output to p, without holding the lock: a write that
// blocks on a connection gone half-open delays neither the container's
// output nor a reconnect, which unplugs p and closes it.
func (r *resumable) send(p *plugged) {
	r.mu.Lock()
	for {
		for r.cur == p && p.sent >= r.end && r.final == nil {
			r.cond.Wait()
		}
		if r.cur != p {
			r.mu.Unlock()
			return
		}
		if p.sent >= r.end {
			res := *r.final
			r.cur = nil
			r.expireIn(r.grace) // a terminal that missed the end may still come for it
			r.mu.Unlock()
			p.conn.Finish(res)
			return
		}
		c, off := r.locate(p.sent)
		p.sent += int64(len(c.p) - off)
		r.mu.Unlock()
		w := p.out
		if c.stderr {
			w = p.errw
		}
		if _, err := w.Write(c.p[off:]); err != nil {
			r.lose(p)
			return
		}
		r.mu.Lock()
	}
}

// locate returns the chunk holding offset n, and n's index in it.
func (r *resumable) locate(n int64) (replayChunkData, int) {
	at := r.start
	for _, c := range r.chunks {
		if n < at+int64(len(c.p)) {
			return c, int(n - at)
		}
		at += int64(len(c.p))
	}
	return replayChunkData{}, 0 // not reached: n < r.end
}

// lose unplugs p, gone, and gives the terminal the grace to come back.
func (r *resumable) lose(p *plugged) {
	r.mu.Lock()
	if r.cur != p {
		r.mu.Unlock()
		return
	}
	r.cur, r.lost = nil, p
	final := r.final != nil
	r.expireIn(r.grace)
	r.cond.Broadcast()
	r.mu.Unlock()
	abandon(p.conn, "")
	if !final {
		rec := r.h.snapshot()
		r.m.log.Info("terminal went away; waiting for it to reconnect", "oneoff", rec.ID, "grace", r.grace)
		r.m.audit(rec, AuditAttach, ActorDaemon, fmt.Sprintf("terminal lost; waiting %s for it to reconnect", r.grace))
	}
}

// expireIn gives up on the session in d unless a terminal plugs in first.
func (r *resumable) expireIn(d time.Duration) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer = time.AfterFunc(d, r.expire)
}

func (r *resumable) expire() {
	r.mu.Lock()
	if r.cur != nil || r.dead {
		r.mu.Unlock()
		return
	}
	r.dead = true
	final := r.final != nil
	r.chunks = nil
	r.cond.Broadcast()
	r.mu.Unlock()
	r.m.resumes.CompareAndDelete(r.h.id, r)
	if !final {
		rec := r.h.snapshot()
		r.m.log.Info("terminal did not reconnect; stopping", "oneoff", rec.ID, "grace", r.grace)
		r.m.audit(rec, AuditReap, ActorDaemon, fmt.Sprintf("the terminal did not reconnect within %s", r.grace))
	}
}

// Next returns what the current terminal sends, waiting through its
// reconnects; it fails once nobody came back within the grace.
func (r *resumable) Next() (Input, error) {
	for {
		r.mu.Lock()
		for r.cur == nil && !r.dead && r.final == nil {
			r.cond.Wait()
		}
		if r.dead {
			r.mu.Unlock()
			return Input{}, errTerminalGone
		}
		if r.cur == nil {
			// The end was told: input has nowhere to go, and a terminal
			// coming back for the end gets it without this reader.
			r.mu.Unlock()
			return Input{}, io.EOF
		}
		p := r.cur
		r.mu.Unlock()
		in, err := p.conn.Next()
		if err != nil {
			r.lose(p)
			continue
		}
		r.mu.Lock()
		p.spoke = true
		r.mu.Unlock()
		if in.Kind == InputAck {
			r.mu.Lock()
			if r.cur == p {
				r.forget(min(in.Offset, p.sent))
			}
			r.mu.Unlock()
			continue
		}
		return in, nil
	}
}

// Stdout and Stderr number the output and keep it for the terminal.
func (r *resumable) Stdout() io.Writer { return resumableWriter{r: r} }
func (r *resumable) Stderr() io.Writer { return resumableWriter{r: r, stderr: true} }

type resumableWriter struct {
	r      *resumable
	stderr bool
}

func (w resumableWriter) Write(p []byte) (int, error) {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.dead && r.final == nil && r.end-r.start >= r.limit {
		r.cond.Wait()
	}
	if r.dead || r.final != nil {
		return len(p), nil // nobody will read it
	}
	if n := len(r.chunks); n > 0 && r.chunks[n-1].stderr == w.stderr && len(r.chunks[n-1].p) < replayChunk {
		r.chunks[n-1].p = append(r.chunks[n-1].p, p...)
	} else {
		r.chunks = append(r.chunks, replayChunkData{stderr: w.stderr, p: append([]byte(nil), p...)})
	}
	r.end += int64(len(p))
	r.cond.Broadcast() // for the sender
	return len(p), nil
}

// Notify tells the current terminal, if there is one; notices are not
// kept for a reconnect.
func (r *resumable) Notify(msg string) {
	r.mu.Lock()
	p := r.cur
	r.mu.Unlock()
	if p != nil {
		p.conn.Notify(msg)
	}
}

// Finish keeps the end for the terminal, which is told it after the output
// it has not received.
func (r *resumable) Finish(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final != nil {
		return
	}
	r.final = &res
	r.cond.Broadcast() // for the sender, or the terminal's return
}
