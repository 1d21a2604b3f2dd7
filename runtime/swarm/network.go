package swarm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// An app's one-offs share an overlay network of their own, made through
// the manager on the app's first one-off and removed by Prune once no
// service is on it: as with runtime/docker's bridges, one app's one-offs
// cannot reach another's, on one node or across nodes. A container on an
// overlay network also gets an endpoint on its node's docker_gwbridge,
// whose inter-container traffic the engine drops, for egress.

// optMTU is the driver option that sets an overlay network's underlay MTU:
// the engine gives its containers' interfaces that less the 50 bytes of
// VXLAN encapsulation.
const optMTU = "com.docker.network.driver.mtu"

// appNet is what this process knows of one app's network.
type appNet struct {
	// use is held for reading while a service is being created on the
	// network, and for writing while Prune removes it, so that a network
	// is never removed between its creation and its first service's.
	use sync.RWMutex
	// mu serialises the network's creation; it guards id.
	mu sync.Mutex
	id string
}

// appNets are the app networks this process knows, by app.
type appNets struct {
	mu sync.Mutex
	m  map[string]*appNet
}

// get returns the entry of an app's network, made on first use.
func (s *appNets) get(app string) *appNet {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*appNet{}
	}
	n := s.m[app]
	if n == nil {
		n = &appNet{}
		s.m[app] = n
	}
	return n
}

// onAppNetwork reports whether spec's one-off runs on its app's network.
func (r *Runtime) onAppNetwork(spec oneoff.Spec) bool {
	return r.opts.Isolation.AppNetworks && spec.App != ""
}

// networkName is the name of an app's overlay network, as
// runtime/docker names its bridge networks.
func (r *Runtime) networkName(app string) string {
	name, _ := docker.NetworkNames(r.opts.Instance, app)
	return name
}

// appNetworks are the networks of spec's service: its app's, by name, or
// none (each node's default bridge).
func (r *Runtime) appNetworks(spec oneoff.Spec) []swarm.NetworkAttachmentConfig {
	if !r.onAppNetwork(spec) {
		return nil
	}
	return []swarm.NetworkAttachmentConfig{{Target: r.networkName(spec.App)}}
}

// endpointSpec is how the swarm resolves spec's service on its network:
// by DNS round robin, without a virtual IP, whose load balancing needs
// IPVS in the nodes' kernels. One-offs publish no ports.
func (r *Runtime) endpointSpec(spec oneoff.Spec) *swarm.EndpointSpec {
	if !r.onAppNetwork(spec) {
		return nil
	}
	return &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR}
}

// createService creates the service of spec's one-off, making its app's
// network first when the swarm has none, and keeping Prune from removing
// it until the service holds it.
func (r *Runtime) createService(ctx context.Context, spec oneoff.Spec, auth string) (swarm.ServiceCreateResponse, error) {
	opts := swarm.ServiceCreateOptions{EncodedRegistryAuth: auth}
	if !r.onAppNetwork(spec) {
		return r.mgr.ServiceCreate(ctx, r.serviceSpec(spec), opts)
	}
	n := r.nets.get(spec.App)
	n.use.RLock()
	defer n.use.RUnlock()
	for attempt := 0; ; attempt++ {
		if _, err := r.ensureNetwork(ctx, n, spec.App); err != nil {
			return swarm.ServiceCreateResponse{}, err
		}
		resp, err := r.mgr.ServiceCreate(ctx, r.serviceSpec(spec), opts)
		if err != nil && attempt == 0 && networkNotFound(err) {
			n.forget() // removed behind this process's back: make it again
			continue
		}
		return resp, err
	}
}

// ensureNetwork returns the ID of the app's network, creating it if the
// swarm has none. Concurrent calls for one app create it once; a network
// another process created first is taken as it is.
func (r *Runtime) ensureNetwork(ctx context.Context, n *appNet, app string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id != "" {
		return n.id, nil
	}
	name := r.networkName(app)
	id, err := r.findNetwork(ctx, app, name)
	if err != nil {
		return "", err
	}
	if id == "" {
		opts := map[string]string{}
		if mtu := r.defaultMTU(ctx); mtu != "" {
			opts[optMTU] = mtu
		}
		resp, err := r.mgr.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "overlay",
			Scope:  "swarm",
			// Only services join it: a container run by hand on a node
			// cannot.
			Attachable: false,
			Options:    opts,
			Labels: map[string]string{
				oneoff.LabelManaged: "true", oneoff.LabelInstance: r.opts.Instance, oneoff.LabelApp: app,
			},
		})
		switch {
		case err == nil:
			id = resp.ID
		case cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists") || strings.Contains(err.Error(), "name conflicts"):
			// Another process made it first: the manager's store says
			// "name conflicts with an existing object".
			// The manager may list it a moment after it refuses the name.
			for wait := 10 * time.Millisecond; ; wait *= 2 {
				if id, err = r.findNetwork(ctx, app, name); err != nil || id != "" {
					break
				}
				if wait > time.Second {
					err = fmt.Errorf("network %s was reported to exist but cannot be found", name)
					break
				}
				select {
				case <-ctx.Done():
					return "", ctx.Err()
				case <-time.After(wait):
				}
			}
			if err != nil {
				return "", err
			}
		case strings.Contains(err.Error(), "address pool") || strings.Contains(err.Error(), "could not find an available"):
			return "", errdefs.Unavailable("network_pool_exhausted", err,
				"the swarm has no address range left for app %q's network: give it more (docker swarm init --default-addr-pool), or run with --app-networks=false", app)
		default:
			return "", r.wrapManager("create app network", err)
		}
	}
	n.id = id
	return id, nil
}

// networkNotFound reports whether a service's create failed for want of
// its network: the manager's engine says so in a 500 of "network NAME not
// found", or in a 404.
func networkNotFound(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "network") && strings.Contains(msg, "not found")
}

// forget drops the network's ID, when the swarm no longer knows it.
func (n *appNet) forget() {
	n.mu.Lock()
	n.id = ""
	n.mu.Unlock()
}

// ourNetworks lists this runtime's app networks, those of app alone when
// app is not empty.
func (r *Runtime) ourNetworks(ctx context.Context, app string) ([]network.Summary, error) {
	args := filters.NewArgs(
		filters.Arg("label", oneoff.LabelManaged+"=true"),
		filters.Arg("label", oneoff.LabelInstance+"="+r.opts.Instance),
		filters.Arg("driver", "overlay"),
	)
	if app != "" {
		args.Add("label", oneoff.LabelApp+"="+app)
	}
	list, err := r.mgr.NetworkList(ctx, network.ListOptions{Filters: args})
	if err != nil {
		return nil, r.wrapManager("list networks", err)
	}
	return slices.DeleteFunc(list, func(n network.Summary) bool { return n.Scope != "swarm" }), nil
}

// findNetwork returns the ID of this runtime's network of app named name;
// "" if there is none.
func (r *Runtime) findNetwork(ctx context.Context, app, name string) (string, error) {
	list, err := r.ourNetworks(ctx, app)
	if err != nil {
		return "", err
	}
	for _, n := range list {
		if n.Name == name {
			return n.ID, nil
		}
	}
	return "", nil
}

// defaultMTU is the MTU the manager's engine gives its default bridge
// (daemon.json's "mtu"): on a host whose links are narrower than 1500
// bytes, it is the underlay's, and an overlay needs to know it.
func (r *Runtime) defaultMTU(ctx context.Context) string {
	nw, err := r.mgr.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return ""
	}
	return nw.Options[optMTU]
}

// pruneNetworks removes this runtime's app networks that no service is
// on, and that no Create of this process is using. A network the manager
// still holds for a task on its way out is left for a later round.
func (r *Runtime) pruneNetworks(ctx context.Context) error {
	list, err := r.ourNetworks(ctx, "")
	if err != nil || len(list) == 0 {
		return err
	}
	services, err := r.mgr.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return r.wrapManager("list services", err)
	}
	used := map[string]bool{}
	for _, s := range services {
		for _, a := range s.Spec.TaskTemplate.Networks {
			used[a.Target] = true
		}
	}
	var errs []error
	for _, nw := range list {
		if used[nw.ID] || used[nw.Name] {
			continue
		}
		if err := r.pruneNetwork(ctx, nw); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneNetwork removes an app network no service is on.
func (r *Runtime) pruneNetwork(ctx context.Context, nw network.Summary) error {
	app := nw.Labels[oneoff.LabelApp]
	n := r.nets.get(app)
	if !n.use.TryLock() {
		return nil // a service is being created on it
	}
	defer n.use.Unlock()
	err := r.mgr.NetworkRemove(ctx, nw.ID)
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
	case strings.Contains(err.Error(), "in use"):
		// A task of a removed service, not yet gone from the manager's
		// store: the next round.
		r.log.Debug("an app network is still in use", "network", nw.Name, "err", err)
		return nil
	default:
		return r.wrapManager("remove app network", err)
	}
	n.mu.Lock()
	if n.id == nw.ID {
		n.id = ""
	}
	n.mu.Unlock()
	r.log.Debug("removed an app network no service uses", "network", nw.Name, "app", app)
	return nil
}
