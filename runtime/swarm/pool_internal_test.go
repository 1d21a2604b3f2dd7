package swarm

import (
	"testing"
	"time"
)

// TestPool_expire checks which holders expire, on a pool whose manager
// does not answer: the removals and the new holders it asks for fail, and
// only the pool's own state is looked at.
func TestPool_expire(t *testing.T) {
	r, err := New(Options{Manager: "tcp://127.0.0.1:1", Instance: "test", Warm: 1, WarmIdle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := r.pool
	now := time.Now()
	holderOf := func(service string, since time.Time) *holder {
		return &holder{o: &oneOff{service: service}, since: since}
	}
	idle := poolKey{app: "idle", image: "img"}
	used := poolKey{app: "used", image: "img"}
	p.mu.Lock()
	p.keys[idle] = &warmKey{used: now.Add(-2 * time.Minute), ready: []*holder{holderOf("idle-1", now.Add(-2*time.Minute))}}
	p.keys[used] = &warmKey{used: now.Add(-time.Second), ready: []*holder{
		holderOf("old", now.Add(-2*time.Minute)), holderOf("fresh", now.Add(-time.Second)),
	}}
	p.mu.Unlock()

	p.expire(now)

	p.mu.Lock()
	defer p.mu.Unlock()
	t.Run("an idle key loses its holders", func(t *testing.T) {
		if k, ok := p.keys[idle]; ok {
			t.Errorf("the idle key is kept: %+v", k)
		}
	})
	t.Run("a holder older than WarmIdle is removed", func(t *testing.T) {
		k := p.keys[used]
		if k == nil {
			t.Fatal("the key in use is gone")
		}
		var got []string
		for _, h := range k.ready {
			got = append(got, h.o.service)
		}
		if len(got) != 1 || got[0] != "fresh" {
			t.Errorf("got ready holders %v, want [fresh]", got)
		}
	})
}
