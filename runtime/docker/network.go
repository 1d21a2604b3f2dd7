package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// BridgePrefix begins the host interface name of every app network's
// bridge, so that one firewall rule (iptables -i oo-+) covers them all.
const BridgePrefix = "oo-"

// networkPrefix begins the engine's name of every app network.
const networkPrefix = "oneoffd-"

// The options of the engine's bridge driver that app networks set.
const (
	optBridgeName = "com.docker.network.bridge.name"
	optICC        = "com.docker.network.bridge.enable_icc"
	optMTU        = "com.docker.network.driver.mtu"
)

// NetworkNames returns the name of an app's network on the engine and of
// its bridge on the host. Both carry a hash of the instance and the app:
// daemons sharing an engine never share a network, and the bridge name
// stays within the kernel's 15 characters.
func NetworkNames(instance, app string) (name, bridge string) {
	sum := sha256.Sum256([]byte(instance + "\x00" + app))
	h := hex.EncodeToString(sum[:6])
	return networkPrefix + app + "-" + h, BridgePrefix + h
}

// appNetwork is what this process knows of one app's network.
type appNetwork struct {
	// use is held for reading while a container is being created on the
	// network, and for writing while Prune removes it, so that a network
	// is never removed between its creation and its first container's.
	use sync.RWMutex
	// mu serialises the network's creation, which engines before API
	// 1.44 do not make atomic; it guards id.
	mu sync.Mutex
	id string
}

// appNetwork returns the entry of an app's network, made on first use.
func (d *Runtime) appNetwork(app string) *appNetwork {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if d.nets == nil {
		d.nets = map[string]*appNetwork{}
	}
	n := d.nets[app]
	if n == nil {
		n = &appNetwork{}
		d.nets[app] = n
	}
	return n
}

// ensureNetwork returns the ID of the app's network, creating it if the
// engine has none. Concurrent calls for one app create it once; a network
// another call or process created first is taken as it is.
func (d *Runtime) ensureNetwork(ctx context.Context, n *appNetwork, app string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id != "" {
		return n.id, nil
	}
	defer d.timed("network")()
	name, bridge := NetworkNames(d.iso.Instance, app)
	id, err := d.findNetwork(ctx, app, name)
	if err != nil {
		return "", err
	}
	if id == "" {
		opts := map[string]string{optBridgeName: bridge, optICC: "true"}
		if mtu := d.defaultMTU(ctx); mtu != "" {
			opts[optMTU] = mtu
		}
		resp, err := d.cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver:  "bridge",
			Options: opts,
			Labels: map[string]string{
				oneoff.LabelManaged: "true", oneoff.LabelInstance: d.iso.Instance, oneoff.LabelApp: app,
			},
		})
		switch {
		case err == nil:
			id = resp.ID
		case cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists"):
			if id, err = d.findNetwork(ctx, app, name); err == nil && id == "" {
				err = fmt.Errorf("network %s was reported to exist but cannot be found", name)
			}
			if err != nil {
				return "", err
			}
		case strings.Contains(err.Error(), "address pool"):
			d.failed("network create")
			return "", errdefs.Unavailable("network_pool_exhausted", err,
				"the engine has no address range left for app %q's network: give it more with default-address-pools in daemon.json, or run with --app-networks=false", app)
		default:
			return "", d.wrap("network create", err)
		}
	}
	n.id = id
	return id, nil
}

// forget drops the network's ID, when the engine no longer knows it.
func (n *appNetwork) forget() {
	n.mu.Lock()
	n.id = ""
	n.mu.Unlock()
}

// findNetwork returns the ID of this daemon's network of app named name,
// the oldest if there are several; "" if there is none.
func (d *Runtime) findNetwork(ctx context.Context, app, name string) (string, error) {
	list, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", oneoff.LabelManaged+"=true"),
		filters.Arg("label", oneoff.LabelInstance+"="+d.iso.Instance),
		filters.Arg("label", oneoff.LabelApp+"="+app),
	)})
	if err != nil {
		return "", d.wrap("network list", err)
	}
	list = slices.DeleteFunc(list, func(n network.Summary) bool { return n.Name != name })
	if len(list) == 0 {
		return "", nil
	}
	slices.SortFunc(list, func(a, b network.Summary) int { return a.Created.Compare(b.Created) })
	return list[0].ID, nil
}

// defaultMTU is the MTU the engine gives its default bridge (daemon.json's
// "mtu"), which new networks do not inherit: on a host whose own links are
// narrower than 1500 bytes, an app network needs it too.
func (d *Runtime) defaultMTU(ctx context.Context) string {
	nw, err := d.cli.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return ""
	}
	return nw.Options[optMTU]
}

// Prune removes this daemon's app networks that no container uses any
// more, and that no Create is using at the moment. A network that turns
// out to be in use is left for a later round.
func (d *Runtime) Prune(ctx context.Context) error {
	_, err := d.prune(ctx)
	return err
}

// PruneWait is Prune for a daemon about to stop: a network the engine
// still holds an endpoint on, for a container whose removal it has yet to
// finish, is tried again until ctx is done.
func (d *Runtime) PruneWait(ctx context.Context) error {
	for {
		busy, err := d.prune(ctx)
		if err != nil || busy == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d app network(s) still held by the engine: %w", busy, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prune removes the unused app networks, and says how many the engine
// would not let go for endpoints of containers no longer listed.
func (d *Runtime) prune(ctx context.Context) (busy int, err error) {
	defer d.timed("network")()
	list, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", oneoff.LabelManaged+"=true"),
		filters.Arg("label", oneoff.LabelInstance+"="+d.iso.Instance),
	)})
	if err != nil {
		return 0, d.wrap("network list", err)
	}
	var errs []error
	for _, nw := range list {
		switch err := d.pruneNetwork(ctx, nw); {
		case errors.Is(err, errEndpointsHeld):
			busy++
		case err != nil:
			errs = append(errs, err)
		}
	}
	return busy, errors.Join(errs...)
}

// errEndpointsHeld is a network the engine will not remove yet: it still
// holds an endpoint of a container being removed.
var errEndpointsHeld = errors.New("the engine still holds endpoints on the network")

// pruneNetwork removes an app network if no container uses it.
func (d *Runtime) pruneNetwork(ctx context.Context, nw network.Summary) error {
	n := d.appNetwork(nw.Labels[oneoff.LabelApp])
	if !n.use.TryLock() {
		return nil // a container is being created on it
	}
	defer n.use.Unlock()
	// Containers that exist but do not run hold no endpoint, and the
	// engine would let their network go: they are counted here. The
	// engine knows those by the network's name only, running ones by its
	// ID too; either matches.
	users, err := d.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("network", nw.Name), filters.Arg("network", nw.ID))})
	if err != nil {
		return d.wrap("list containers", err)
	}
	for _, u := range users {
		if u.State != "removing" && u.State != "dead" {
			return nil
		}
	}
	if len(users) > 0 {
		return errEndpointsHeld // on their way out: the next round tries again
	}
	err = d.cli.NetworkRemove(ctx, nw.ID)
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
	case strings.Contains(err.Error(), "active endpoints"):
		return errEndpointsHeld // the next round tries again
	default:
		return d.wrap("network remove", err)
	}
	n.mu.Lock()
	if n.id == nw.ID {
		n.id = ""
	}
	n.mu.Unlock()
	if d.log != nil {
		d.log.Debug("removed an app network no container uses", "network", nw.Name, "app", nw.Labels[oneoff.LabelApp])
	}
	return nil
}

// leaveAppNetworks takes container id off its app networks before it is
// removed. The engine (20.10 at least) may otherwise keep the endpoint of a
// container removed while it stops, and then never lets the network go
// ("has active endpoints", with no container on it). A container that is
// gone, or on no app network, is left as it is.
func (d *Runtime) leaveAppNetworks(ctx context.Context, id string) {
	if !d.iso.AppNetworks {
		return
	}
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil || info.NetworkSettings == nil {
		return
	}
	for name, ep := range info.NetworkSettings.Networks {
		if !strings.HasPrefix(name, networkPrefix) || ep == nil {
			continue
		}
		if err := d.cli.NetworkDisconnect(ctx, ep.NetworkID, id, true); err != nil && d.log != nil {
			d.log.Debug("leave app network before removal", "container", id, "network", name, "err", err)
		}
	}
}
