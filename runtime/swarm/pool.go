package swarm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/oneoff"
)

// DefaultWarmIdle is how long the warm pool keeps the holders of an app,
// image and size that no one-off has asked for.
const DefaultWarmIdle = 10 * time.Minute

// warmCheck is how often the warm pool looks at its holders: whether they
// still run, and whether their key has been idle too long.
const warmCheck = 5 * time.Second

// The labels of the warm pool's services.
const (
	// labelPool marks a warm holder's service, with its app as the value;
	// a one-off that takes the holder replaces the service's labels with
	// its own, and so this one too.
	labelPool = "oneoffd.swarm.pool"
	// labelPoolOwner is the runtime, of this process, that keeps the
	// holder: Prune removes the holders that earlier processes left.
	labelPoolOwner = "oneoffd.swarm.pool.owner"
	// labelCmd and labelEnv are, on the service of a one-off that took a
	// holder, its command and environment as JSON: the holder's spec has
	// neither, and a later process that starts the one-off reads them.
	labelCmd = "oneoffd.swarm.cmd"
	labelEnv = "oneoffd.swarm.env"
)

// poolKey is what makes holders interchangeable: one-offs of the same app
// (its network), image and size limits.
type poolKey struct {
	app, image string
	size       oneoff.Size // without its name
}

// keyOf is the key of the holders spec's one-off can take.
func keyOf(spec oneoff.Spec) poolKey {
	size := spec.Limits
	size.Name = ""
	return poolKey{app: spec.App, image: spec.Image, size: size}
}

// pooled reports whether spec's one-off can take a warm holder: an attached
// one, whose command runs as an exec beside the holder. A detached one's
// command must be its container's own process, with the container's log.
func pooled(spec oneoff.Spec) bool { return spec.Stdin && !spec.Logs }

// holder is a warm holder: the service of a holder that runs, not yet any
// one-off's.
type holder struct {
	o       *oneOff // its node, container and image
	spec    swarm.ServiceSpec
	version swarm.Version
	since   time.Time // when it was started
}

// pool keeps warm holders ready per key: opts.Warm of each key a one-off
// has asked for in the last opts.WarmIdle.
type pool struct {
	r      *Runtime
	warm   int
	idle   time.Duration
	owner  string
	ctx    context.Context // ends with close
	cancel context.CancelFunc
	wg     sync.WaitGroup // what runs in the background

	negotiate sync.Once

	mu      sync.Mutex
	keys    map[poolKey]*warmKey
	closed  bool
	looping bool
}

// warmKey is the pool's state of one key.
type warmKey struct {
	ready    []*holder // oldest first
	starting int
	used     time.Time
}

// newPool returns the warm pool of r, or nil when r keeps none.
func newPool(r *Runtime) *pool {
	if r.opts.Warm <= 0 {
		return nil
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{r: r, warm: r.opts.Warm, idle: r.opts.WarmIdle, owner: hex.EncodeToString(b),
		ctx: ctx, cancel: cancel, keys: map[poolKey]*warmKey{}}
}

// owns reports whether the holder of a service labelled with owner is the
// pool's.
func (p *pool) owns(owner string) bool { return p != nil && p.owner == owner }

// claim hands a ready holder of spec's key to spec's one-off and returns
// the one-off, or nil when there is none (or spec's one-off takes none):
// the one-off's own service is then created as without a pool. Either way
// the key is used, and the pool starts holders to keep its count ready.
func (p *pool) claim(ctx context.Context, spec oneoff.Spec) *oneOff {
	if p == nil || !pooled(spec) {
		return nil
	}
	// The manager's client negotiates on its first call, which is not
	// safe for concurrent calls: the first holders start beside this
	// Create.
	p.negotiate.Do(func() { p.r.mgr.NegotiateAPIVersion(ctx) })
	key := keyOf(spec)
	for {
		h := p.take(key)
		if h == nil {
			return nil
		}
		if s, ok := p.r.cachedNodeState(h.o.node.id); ok && lost(s) {
			p.discard(h)
			continue
		}
		o, err := p.hand(ctx, h, spec)
		if err == nil {
			return o
		}
		p.r.log.Warn("a warm holder could not be handed to a one-off; it is removed", "service", h.o.service, "err", err)
		p.discard(h)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// take removes the oldest ready holder of key from the pool and returns
// it, nil when none is ready, and starts holders in its place.
func (p *pool) take(key poolKey) *holder {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	k := p.keys[key]
	if k == nil {
		k = &warmKey{}
		p.keys[key] = k
	}
	k.used = time.Now()
	var h *holder
	if len(k.ready) > 0 {
		h = k.ready[0]
		k.ready = k.ready[1:]
	}
	p.fillLocked(key, k)
	if !p.looping {
		p.looping = true
		p.wg.Add(1)
		go p.loop()
	}
	return h
}

// fillLocked starts as many holders of key as it lacks.
func (p *pool) fillLocked(key poolKey, k *warmKey) {
	for len(k.ready)+k.starting < p.warm {
		k.starting++
		p.wg.Add(1)
		go p.warmOne(key, k)
	}
}

// warmOne starts a holder of key and adds it to k's ready ones, unless
// the pool closed or k expired meanwhile.
func (p *pool) warmOne(key poolKey, k *warmKey) {
	defer p.wg.Done()
	h, err := p.start(key)
	p.mu.Lock()
	current := p.keys[key] == k
	if current {
		k.starting--
	}
	keep := err == nil && current && !p.closed
	if keep {
		k.ready = append(k.ready, h)
	}
	p.mu.Unlock()
	switch {
	case err != nil:
		if p.ctx.Err() == nil {
			p.r.log.Warn("a warm holder did not start", "app", key.app, "image", key.image, "err", err)
		}
	case !keep:
		p.remove(h.o.service)
	}
}

// start makes a holder of key and waits until it runs.
func (p *pool) start(key poolKey) (*holder, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	spec := oneoff.Spec{
		Name: key.app + ".warm." + hex.EncodeToString(b), Image: key.image, App: key.app, Limits: key.size, Stdin: true,
		Labels: map[string]string{labelPool: key.app, labelPoolOwner: p.owner},
	}
	since := time.Now()
	o, err := p.r.startService(p.ctx, spec)
	if err != nil {
		return nil, err
	}
	h, err := p.ready(o, since)
	if err != nil {
		p.remove(o.service)
		return nil, err
	}
	return h, nil
}

// ready learns what handing a running holder over needs: its image's
// entrypoint, and its service's spec and version as the manager keeps them.
func (p *pool) ready(o *oneOff, since time.Time) (*holder, error) {
	if _, err := o.command(p.ctx); err != nil {
		return nil, err
	}
	svc, _, err := p.r.mgr.ServiceInspectWithRaw(p.ctx, o.service, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, p.r.wrapManager("inspect service", err)
	}
	return &holder{o: o, spec: svc.Spec, version: svc.Version, since: since}, nil
}

// hand makes h spec's one-off: its service gets the one-off's labels, and
// its command and environment with them. Only the service's own labels
// change, not its task's spec, so Swarm leaves the task running.
func (p *pool) hand(ctx context.Context, h *holder, spec oneoff.Spec) (*oneOff, error) {
	labels := make(map[string]string, len(spec.Labels)+3)
	maps.Copy(labels, spec.Labels)
	labels[labelInstance] = p.r.opts.Instance
	cmd, _ := json.Marshal(spec.Cmd)
	env, _ := json.Marshal(spec.Env)
	labels[labelCmd], labels[labelEnv] = string(cmd), string(env)
	s := h.spec
	s.Labels = labels
	if _, err := p.r.mgr.ServiceUpdate(ctx, h.o.service, h.version, s, swarm.ServiceUpdateOptions{}); err != nil {
		return nil, p.r.wrapManager("update service", err)
	}
	o := &oneOff{service: h.o.service, node: h.o.node, container: h.o.container,
		cmd: slices.Clone(spec.Cmd), env: slices.Clone(spec.Env)}
	h.o.mu.Lock()
	o.image = h.o.image
	h.o.mu.Unlock()
	o.argv = commandLine(o.image.entrypoint, o.image.cmd, o.cmd)
	p.r.mu.Lock()
	p.r.ones[o.service] = o
	p.r.mu.Unlock()
	return o, nil
}

// discard removes a holder taken from the pool, in the background.
func (p *pool) discard(h *holder) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.remove(h.o.service)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.remove(h.o.service)
	}()
}

// remove removes a holder's service and container.
func (p *pool) remove(service string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.r.Remove(ctx, service); err != nil {
		p.r.log.Warn("remove a warm holder failed; Prune retries", "service", service, "err", err)
	}
}

// removeAll removes holders, side by side.
func (p *pool) removeAll(hs []*holder) {
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.remove(h.o.service)
		}()
	}
	wg.Wait()
}

// loop checks the holders until the pool closes.
func (p *pool) loop() {
	defer p.wg.Done()
	every := min(warmCheck, max(p.idle/2, 10*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		p.expire(time.Now())
		p.check()
	}
}

// expire removes the holders of the keys unused since WarmIdle before
// now (holders of theirs still starting are removed once they run), and
// replaces the holders older than WarmIdle: a holder runs its image as
// its node pulled it when it started, and a tag pushed again is so taken
// up within WarmIdle.
func (p *pool) expire(now time.Time) {
	var gone []*holder
	p.mu.Lock()
	for key, k := range p.keys {
		if now.Sub(k.used) >= p.idle {
			gone = append(gone, k.ready...)
			delete(p.keys, key)
			continue
		}
		kept := k.ready[:0]
		for _, h := range k.ready {
			if now.Sub(h.since) >= p.idle {
				gone = append(gone, h)
			} else {
				kept = append(kept, h)
			}
		}
		clear(k.ready[len(kept):])
		k.ready = kept
		if !p.closed {
			p.fillLocked(key, k)
		}
	}
	p.mu.Unlock()
	p.removeAll(gone)
}

// check drops the ready holders whose task no longer runs, or whose node
// is lost, and starts others in their place.
func (p *pool) check() {
	p.mu.Lock()
	var services []string
	asked := map[*holder]bool{}
	for _, k := range p.keys {
		for _, h := range k.ready {
			services = append(services, h.o.service)
			asked[h] = true
		}
	}
	p.mu.Unlock()
	if len(services) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, warmCheck)
	defer cancel()
	args := filters.NewArgs()
	for _, s := range services {
		args.Add("service", s)
	}
	tasks, err := p.r.mgr.TaskList(ctx, swarm.TaskListOptions{Filters: args})
	if err != nil {
		return
	}
	names, err := p.r.refreshNodes(ctx)
	if err != nil {
		return
	}
	newest := map[string]swarm.Task{}
	for _, t := range tasks {
		if cur, ok := newest[t.ServiceID]; !ok || t.CreatedAt.After(cur.CreatedAt) {
			newest[t.ServiceID] = t
		}
	}
	alive := func(h *holder) bool {
		if !asked[h] {
			return true // ready since the list: judged next time
		}
		t, ok := newest[h.o.service]
		if !ok || t.Status.State != swarm.TaskStateRunning || t.Status.ContainerStatus == nil ||
			t.Status.ContainerStatus.ContainerID != h.o.container {
			return false
		}
		info, ok := names[t.NodeID]
		return ok && !lost(info.state)
	}
	var gone []*holder
	p.mu.Lock()
	for key, k := range p.keys {
		kept := k.ready[:0]
		for _, h := range k.ready {
			if alive(h) {
				kept = append(kept, h)
			} else {
				gone = append(gone, h)
			}
		}
		clear(k.ready[len(kept):])
		k.ready = kept
		if !p.closed {
			p.fillLocked(key, k)
		}
	}
	p.mu.Unlock()
	for _, h := range gone {
		p.r.log.Info("a warm holder stopped running; it is replaced", "service", h.o.service, "node", h.o.node.name)
	}
	p.removeAll(gone)
}

// close removes the pool's holders, those still starting too, and waits
// for what runs in the background.
func (p *pool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	var all []*holder
	for _, k := range p.keys {
		all = append(all, k.ready...)
	}
	p.keys = map[poolKey]*warmKey{}
	p.mu.Unlock()
	p.cancel()
	p.removeAll(all)
	p.wg.Wait()
}
