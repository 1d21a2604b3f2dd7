package swarm

import (
	"context"
	"errors"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/oneoff"
)

// labelService is the label the swarm puts on a task's container: its
// service's ID.
const labelService = "com.docker.swarm.service.id"

// labelTask is the label the swarm puts on a task's container: the task's
// ID.
const labelTask = "com.docker.swarm.task.id"

// Remove deletes the one-off's service and, when its node answers, makes
// sure its container is gone at once rather than when the node's agent
// gets to it.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	r.mu.Lock()
	o := r.ones[id]
	delete(r.ones, id)
	r.mu.Unlock()
	var n *node
	var cid string
	if o != nil {
		n, cid = o.node, o.container
	} else if t, ok, err := r.task(ctx, id); err == nil && ok && t.Status.ContainerStatus != nil {
		if tn, err := r.node(ctx, t.NodeID); err == nil {
			n, cid = tn, t.Status.ContainerStatus.ContainerID
		}
	}
	if err := r.mgr.ServiceRemove(ctx, id); err != nil && !cerrdefs.IsNotFound(err) {
		return r.wrapManager("remove service", err)
	}
	if n != nil && cid != "" {
		err := n.cli.ContainerRemove(ctx, cid, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			// The node's agent removes it when it can; Prune covers a
			// node that was away.
			r.log.Debug("remove a one-off's container on its node failed", "node", n.name, "container", cid, "err", err)
		}
	}
	return nil
}

// List returns the one-offs' services carrying all of labels, each as a
// container on the node its task runs on.
func (r *Runtime) List(ctx context.Context, labels map[string]string) ([]oneoff.Container, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	services, err := r.mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: args})
	if err != nil {
		return nil, r.wrapManager("list services", err)
	}
	if len(services) == 0 {
		return []oneoff.Container{}, nil
	}
	// The tasks of these services only, not of every service of the swarm.
	targs := filters.NewArgs()
	for _, s := range services {
		targs.Add("service", s.ID)
	}
	tasks, err := r.mgr.TaskList(ctx, swarm.TaskListOptions{Filters: targs})
	if err != nil && (cerrdefs.IsNotFound(err) || strings.Contains(err.Error(), "not found")) {
		// A service removed since it was listed: the manager refuses a
		// filter naming it, so all the tasks are read instead.
		tasks, err = r.mgr.TaskList(ctx, swarm.TaskListOptions{})
	}
	if err != nil {
		return nil, r.wrapManager("list tasks", err)
	}
	newest := map[string]swarm.Task{}
	for _, t := range tasks {
		if cur, ok := newest[t.ServiceID]; !ok || t.CreatedAt.After(cur.CreatedAt) {
			newest[t.ServiceID] = t
		}
	}
	names, err := r.refreshNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]oneoff.Container, 0, len(services))
	for _, s := range services {
		if _, ok := s.Spec.Labels[labelPool]; ok {
			continue // a warm holder is no one-off's
		}
		c := oneoff.Container{ID: s.ID, Labels: s.Spec.Labels}
		t, ok := newest[s.ID]
		if ok {
			info := names[t.NodeID]
			c.Node = info.name
			switch t.Status.State {
			case swarm.TaskStateRunning, swarm.TaskStateStarting:
				// Starting too: Create takes the node's word that the
				// container started, which the manager hears of later.
				if !lost(info.state) {
					c.Started = r.started(ctx, t)
					c.Running = c.Started
				}
			case swarm.TaskStateComplete, swarm.TaskStateFailed:
				c.Started = t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != ""
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// started reports whether a running task's holder has been told to run
// the one-off's command: the go file (detached) or the pid file
// (attached) is in its container. A node that does not answer says
// nothing: started, so that the one-off is not taken for a pending one.
func (r *Runtime) started(ctx context.Context, t swarm.Task) bool {
	if t.Status.ContainerStatus == nil || t.Status.ContainerStatus.ContainerID == "" {
		return false
	}
	n, err := r.node(ctx, t.NodeID)
	if err != nil {
		return true
	}
	cid := t.Status.ContainerStatus.ContainerID
	for _, f := range []string{goFile, pidFile} {
		_, err := n.cli.ContainerStatPath(ctx, cid, f)
		if err == nil {
			return true
		}
		if !cerrdefs.IsNotFound(err) {
			return true
		}
	}
	return false
}

// Prune removes the warm holders that an earlier process of this instance
// left, and, on every node that answers, the containers of this runtime's
// services that are gone: a node that was away when its one-off's service
// was removed keeps its container. It then removes the app networks no
// service is on.
func (r *Runtime) Prune(ctx context.Context) error {
	services, err := r.mgr.ServiceList(ctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", labelInstance+"="+r.opts.Instance))})
	if err != nil {
		return r.wrapManager("list services", err)
	}
	var errs []error
	live := make(map[string]bool, len(services))
	for _, s := range services {
		if _, ok := s.Spec.Labels[labelPool]; ok && !r.pool.owns(s.Spec.Labels[labelPoolOwner]) {
			r.log.Info("removing a warm holder an earlier process left", "service", s.Spec.Name)
			if err := r.Remove(ctx, s.ID); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		live[s.ID] = true
	}
	names, err := r.refreshNodes(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// Containers whose service was not listed: a service created since
	// the listing (a Create placing its one-off, a warm holder starting)
	// may have one too, so they are removed only if a listing made after
	// theirs still lacks their service.
	type stray struct {
		n           *node
		id, service string
	}
	var strays []stray
	for id, info := range names {
		if info.state != swarm.NodeStateReady {
			continue
		}
		n, err := r.node(ctx, id)
		if err != nil {
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		list, err := n.cli.ContainerList(nctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", labelInstance+"="+r.opts.Instance))})
		cancel()
		if err != nil {
			r.log.Debug("list containers on a node to prune failed", "node", n.name, "err", err)
			continue
		}
		for _, c := range list {
			if !live[c.Labels[labelService]] {
				strays = append(strays, stray{n, c.ID, c.Labels[labelService]})
			}
		}
	}
	if len(strays) > 0 {
		services, err := r.mgr.ServiceList(ctx, swarm.ServiceListOptions{
			Filters: filters.NewArgs(filters.Arg("label", labelInstance+"="+r.opts.Instance))})
		if err != nil {
			return errors.Join(append(errs, r.wrapManager("list services", err))...)
		}
		for _, s := range services {
			live[s.ID] = true
		}
	}
	for _, st := range strays {
		if live[st.service] {
			continue
		}
		r.log.Info("removing a container whose one-off's service is gone", "node", st.n.name, "container", st.id[:12])
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := st.n.cli.ContainerRemove(nctx, st.id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			errs = append(errs, wrapNode(st.n, "remove container", err))
		}
	}
	return errors.Join(append(errs, r.pruneNetworks(ctx))...)
}

// HasImage says yes: on a swarm the node that runs a one-off pulls its
// image, so the daemon goes straight to Create.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) { return true, nil }

// Pull does nothing: the nodes pull.
func (r *Runtime) Pull(ctx context.Context, ref string, progress func(oneoff.PullProgress)) error {
	return nil
}

// CanPull asks ref's registry, through the manager's engine and with the
// credentials set for that registry, whether it has the image.
func (r *Runtime) CanPull(ctx context.Context, ref string) error { return r.reg.CanPull(ctx, ref) }
