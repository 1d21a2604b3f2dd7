package swarm

// Abandon stops r's warm pool as a crash of its process would: its holders
// stay on the swarm, for another process to find.
func Abandon(r *Runtime) {
	p := r.pool
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.keys = map[poolKey]*warmKey{}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}
