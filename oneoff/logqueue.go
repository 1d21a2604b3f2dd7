package oneoff

import "sync"

// maxQueued bounds the entries read but not yet stored; the reader waits
// beyond it.
const maxQueued = 1 << 16

// entryQueue hands log entries from the goroutine that reads them to the
// one that stores them, all that has arrived at a time, so that neither
// wakes the other for every line.
type entryQueue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	items    []LogEntry
	closed   bool
	err      error
	// takerWaits and pusherWaits say who sleeps, so that nobody signals
	// for nothing.
	takerWaits  bool
	pusherWaits bool
}

func newEntryQueue() *entryQueue {
	q := &entryQueue{}
	q.notEmpty.L, q.notFull.L = &q.mu, &q.mu
	return q
}

// push adds an entry, waiting while the queue is full; it reports false
// once the queue is closed.
func (q *entryQueue) push(e LogEntry) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) >= maxQueued && !q.closed {
		q.pusherWaits = true
		q.notFull.Wait()
	}
	if q.closed {
		return false
	}
	q.items = append(q.items, e)
	if q.takerWaits {
		q.takerWaits = false
		q.notEmpty.Signal()
	}
	return true
}

// close ends the queue with the reader's error, nil at the log's end.
func (q *entryQueue) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed, q.err = true, err
	}
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}

// take returns what has arrived, giving buf to the queue for what comes
// next; with wait it waits for at least one entry. done says the queue is
// closed and empty, err why.
func (q *entryQueue) take(buf []LogEntry, wait bool) (items []LogEntry, done bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for wait && len(q.items) == 0 && !q.closed {
		q.takerWaits = true
		q.notEmpty.Wait()
	}
	items, q.items = q.items, buf[:0]
	if q.pusherWaits {
		q.pusherWaits = false
		q.notFull.Broadcast()
	}
	return items, q.closed && len(items) == 0, q.err
}
