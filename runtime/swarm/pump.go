package swarm

import (
	"io"
	"sync"
)

// pumpMax is how much a pump holds that its reader has not taken yet.
const pumpMax = 1 << 20

// pump reads a stream ahead into a buffer, from which each Read takes all
// that has come. Over TLS a read returns at most one TLS record, which the
// engine writes per log message: read as it comes, a log of small lines
// arrives a line at a time, and runtime/docker's log reader, which pauses
// briefly after a short read so that lines gather, would pause per line.
type pump struct {
	rc io.ReadCloser

	mu   sync.Mutex
	cond *sync.Cond
	buf  []byte
	err  error
}

// newPump starts reading rc ahead.
func newPump(rc io.ReadCloser) *pump {
	p := &pump{rc: rc}
	p.cond = sync.NewCond(&p.mu)
	go p.run()
	return p
}

func (p *pump) run() {
	b := make([]byte, 64<<10)
	for {
		n, err := p.rc.Read(b)
		p.mu.Lock()
		p.buf = append(p.buf, b[:n]...)
		if err != nil {
			p.err = err
		}
		p.cond.Broadcast()
		for len(p.buf) >= pumpMax && p.err == nil {
			p.cond.Wait()
		}
		done := p.err != nil
		p.mu.Unlock()
		if done {
			return
		}
	}
}

// Read takes what has come, waiting for something when nothing has.
func (p *pump) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.err == nil {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		return 0, p.err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil
	}
	p.cond.Broadcast()
	return n, nil
}

// Close closes the stream, which ends the reading ahead.
func (p *pump) Close() error {
	err := p.rc.Close()
	p.mu.Lock()
	if p.err == nil {
		p.err = io.ErrClosedPipe
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	return err
}
