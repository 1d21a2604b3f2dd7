package oneoff

import (
	"sync"
	"sync/atomic"
	"time"
)

// live is the in-memory side of a one-off that has not finished. Its
// fields are guarded by mu, but for id and app.
type live struct {
	// id and app are the record's, which never change: read them without
	// the lock.
	id, app string

	mu      sync.Mutex
	rec     OneOff
	claimed bool
	// reason is why the one-off is being stopped, once someone asked;
	// stoppedBy is who asked, for a stop.
	reason    Outcome
	stoppedBy string
	stopc     chan struct{}
	timer     *time.Timer
	finished  bool
	done      chan struct{}
	// ready is closed once the container exists, or never will (prepErr
	// says why); progress is how far its image's pull has got.
	ready     chan struct{}
	readyOnce sync.Once
	prepErr   error
	progress  PullProgress
	// running says the container started in this process, so that the
	// running gauge goes down again at the end.
	running bool
	// The attached terminal's traffic, and its activity once attached.
	bytesIn, bytesOut atomic.Int64
	act               *activity
}

func newLive(rec OneOff) *live {
	return &live{id: rec.ID, app: rec.App, rec: rec, stopc: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{})}
}

// current returns the record with the terminal's traffic so far.
func (l *live) current() OneOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.rec
	rec.BytesIn, rec.BytesOut = l.bytesIn.Load(), l.bytesOut.Load()
	if l.act != nil {
		last := l.act.lastTime().UTC()
		rec.LastActivity = &last
	}
	return rec
}

// snapshot returns a copy of the record.
func (l *live) snapshot() OneOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// readyErr says why the container will never exist, once ready is closed.
func (l *live) readyErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prepErr
}

// markReady says the container exists, or with err that it never will.
func (l *live) markReady(err error) {
	l.readyOnce.Do(func() {
		l.mu.Lock()
		l.prepErr = err
		l.mu.Unlock()
		close(l.ready)
	})
}

// requestStop records why the one-off must stop, the first reason winning,
// and reports whether this call was the first.
func (l *live) requestStop(why Outcome) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requestStopLocked(why)
}

func (l *live) requestStopLocked(why Outcome) bool {
	if l.reason != "" {
		return false
	}
	l.reason = why
	close(l.stopc)
	return true
}

// stopUnclaimed requests a stop unless a terminal claimed the one-off
// first; once it returns true, no terminal can claim it any more, so the
// caller alone discards it.
func (l *live) stopUnclaimed(why Outcome) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.claimed {
		return false
	}
	return l.requestStopLocked(why)
}

func (l *live) stopTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
}
