package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// isolated returns a runtime isolated as iso under an instance of its own,
// and removes the test's containers and networks when it ends.
func isolated(t *testing.T, iso docker.Isolation) (*docker.Runtime, string) {
	t.Helper()
	d := newDocker(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	iso.Instance = "runtime-test-" + hex.EncodeToString(b)
	d.SetIsolation(iso)
	t.Cleanup(func() {
		ctx := context.Background()
		list, err := d.List(ctx, map[string]string{oneoff.LabelInstance: iso.Instance})
		if err != nil {
			t.Error(err)
		}
		for _, c := range list {
			_ = d.Remove(ctx, c.ID)
		}
		if err := d.Prune(ctx); err != nil {
			t.Errorf("prune: %v", err)
		}
		if left := networks(t, d, iso.Instance); len(left) > 0 {
			t.Errorf("networks left after prune: %v", left)
			for _, n := range left {
				_ = d.Client().NetworkRemove(ctx, n.ID)
			}
		}
	})
	return d, iso.Instance
}

// networks lists the engine's networks of an instance.
func networks(t *testing.T, d *docker.Runtime, instance string) []network.Summary {
	t.Helper()
	list, err := d.Client().NetworkList(context.Background(), network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", oneoff.LabelInstance+"="+instance))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// appSpec is a spec of a container of app in the test's instance.
func appSpec(t *testing.T, instance, app string, cmd ...string) oneoff.Spec {
	return oneoff.Spec{Image: testenv.Image(t), Cmd: cmd, App: app,
		Labels: map[string]string{oneoff.LabelManaged: "true", oneoff.LabelInstance: instance, oneoff.LabelApp: app}}
}

// run runs a container to its end and returns its output and exit code.
func run(t *testing.T, d *docker.Runtime, s oneoff.Spec) (string, int) {
	t.Helper()
	ctx := context.Background()
	id, err := created(d.Create(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove(ctx, id)
	proc, err := d.Start(ctx, id, oneoff.StartOptions{Attach: true, TTY: false})
	if err != nil {
		t.Fatal(err)
	}
	st, exit := proc.Stream, proc.Exit
	defer st.Close()
	var out testenv.Buffer
	done := make(chan error, 1)
	go func() { done <- st.CopyOutput(&out, &out) }()
	var e oneoff.Exit
	select {
	case e = <-exit:
	case <-time.After(time.Minute):
		t.Fatalf("%v still runs after a minute", s.Cmd)
	}
	<-done
	if e.Err != nil {
		t.Fatal(e.Err)
	}
	return out.String(), e.Code
}

// start starts a container and returns its ID.
func start(t *testing.T, d *docker.Runtime, s oneoff.Spec) string {
	t.Helper()
	ctx := context.Background()
	id, err := created(d.Create(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove(context.Background(), id) })
	if _, err := d.Start(ctx, id, oneoff.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return id
}

// procStatus reads fields of /proc/self/status as a container's process
// sees them.
func procStatus(t *testing.T, d *docker.Runtime, s oneoff.Spec) map[string]string {
	t.Helper()
	s.Cmd = []string{"cat", "/proc/self/status"}
	out, code := run(t, d, s)
	if code != 0 {
		t.Fatalf("cat /proc/self/status: exit %d: %s", code, out)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

func TestDocker_Capabilities(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		caps []string
		nnp  bool
	}{
		{"the defaults", docker.DefaultCapabilities, true},
		{"a set of two, no-new-privileges off", []string{"CAP_CHOWN", "CAP_KILL"}, false},
		{"none", []string{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iso := docker.DefaultIsolation("")
			iso.Capabilities, iso.NoNewPrivileges = tt.caps, tt.nnp
			d, instance := isolated(t, iso)
			st := procStatus(t, d, appSpec(t, instance, "caps"))
			want := slices.Sorted(slices.Values(tt.caps))
			for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
				if got := testenv.CapabilityNames(t, st[field]); !slices.Equal(got, want) {
					t.Errorf("%s = %s = %v, want %v", field, st[field], got, want)
				}
			}
			if got, want := st["NoNewPrivs"], map[bool]string{true: "1", false: "0"}[tt.nnp]; got != want {
				t.Errorf("NoNewPrivs = %q, want %q", got, want)
			}
		})
	}
}

// listen starts a container of app that accepts connection after connection
// on port 7000, and returns its address on its network.
func listen(t *testing.T, d *docker.Runtime, instance, app string) string {
	t.Helper()
	id := start(t, d, appSpec(t, instance, app, "sh", "-c", "while :; do nc -l -p 7000; done"))
	info, err := d.Client().ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range info.NetworkSettings.Networks {
		if ep.IPAddress != "" {
			return ep.IPAddress
		}
	}
	t.Fatalf("container %s has no address: %+v", id, info.NetworkSettings.Networks)
	return ""
}

// dial runs a container of app that connects to addr:7000, retrying for
// a few seconds, and says whether it got through.
func dial(t *testing.T, d *docker.Runtime, instance, app, addr string) bool {
	t.Helper()
	script := fmt.Sprintf("for i in 1 2 3; do echo hi | nc -w 2 %s 7000 && exit 0; sleep 0.2; done; exit 1", addr)
	out, code := run(t, d, appSpec(t, instance, app, "sh", "-c", script))
	t.Logf("%s -> %s: exit %d %s", app, addr, code, out)
	return code == 0
}

func TestDocker_AppNetworks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("one app cannot reach another's; within an app it can", func(t *testing.T) {
		t.Parallel()
		d, instance := isolated(t, docker.DefaultIsolation(""))
		addr := listen(t, d, instance, "alpha")
		if !dial(t, d, instance, "alpha", addr) {
			t.Fatal("a one-off cannot reach a one-off of its own app: the test cannot tell isolation from a broken listener")
		}
		if dial(t, d, instance, "beta", addr) {
			t.Error("a one-off of app beta reached one of app alpha")
		}
	})

	t.Run("with app networks off, apps share the default bridge", func(t *testing.T) {
		t.Parallel()
		iso := docker.DefaultIsolation("")
		iso.AppNetworks = false
		d, instance := isolated(t, iso)
		addr := listen(t, d, instance, "alpha")
		if !dial(t, d, instance, "beta", addr) {
			t.Error("with app networks off, a one-off of app beta cannot reach app alpha's")
		}
		if n := networks(t, d, instance); len(n) != 0 {
			t.Errorf("networks %v were made with app networks off", n)
		}
	})

	t.Run("the network lives while a container uses it, and is pruned after", func(t *testing.T) {
		t.Parallel()
		d, instance := isolated(t, docker.DefaultIsolation(""))
		name, bridge := docker.NetworkNames(instance, "gamma")
		id, err := created(d.Create(ctx, appSpec(t, instance, "gamma", "sleep", "600")))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Remove(ctx, id)
		nw, err := d.Client().NetworkInspect(ctx, name, network.InspectOptions{})
		if err != nil {
			t.Fatalf("the app's network after create: %v", err)
		}
		if got := nw.Options["com.docker.network.bridge.name"]; got != bridge {
			t.Errorf("bridge name = %q, want %q", got, bridge)
		}
		if nw.Labels[oneoff.LabelManaged] != "true" || nw.Labels[oneoff.LabelApp] != "gamma" || nw.Labels[oneoff.LabelInstance] != instance {
			t.Errorf("labels = %v, want managed, the instance and the app", nw.Labels)
		}
		// Created and not started, the container holds no endpoint yet.
		if err := d.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Client().NetworkInspect(ctx, name, network.InspectOptions{}); err != nil {
			t.Fatalf("prune removed a network a created container is to run on: %v", err)
		}
		if _, err := d.Start(ctx, id, oneoff.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := d.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Client().NetworkInspect(ctx, name, network.InspectOptions{}); err != nil {
			t.Fatalf("prune removed a network a container runs on: %v", err)
		}
		if err := d.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := d.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Client().NetworkInspect(ctx, name, network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("the network once its container is gone: %v, want not found", err)
		}
		// The next one-off of the app gets a network again.
		if out, code := run(t, d, appSpec(t, instance, "gamma", "true")); code != 0 {
			t.Errorf("a one-off after the prune: exit %d %s", code, out)
		}
	})

	t.Run("concurrent creates for one app all succeed, on one network", func(t *testing.T) {
		t.Parallel()
		d, instance := isolated(t, docker.DefaultIsolation(""))
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = d.Create(ctx, appSpec(t, instance, "delta", "true"))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("create %d: %v", i, err)
			}
		}
		if got := networks(t, d, instance); len(got) != 1 {
			t.Errorf("%d networks, want 1: %v", len(got), got)
		}
	})

	t.Run("a create and a prune at once", func(t *testing.T) {
		t.Parallel()
		d, instance := isolated(t, docker.DefaultIsolation(""))
		for range 5 {
			var wg sync.WaitGroup
			var id string
			var err error
			wg.Add(2)
			go func() { defer wg.Done(); id, err = created(d.Create(ctx, appSpec(t, instance, "epsilon", "true"))) }()
			go func() { defer wg.Done(); _ = d.Prune(ctx) }()
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Start(ctx, id, oneoff.StartOptions{}); err != nil {
				t.Fatalf("start after a concurrent prune: %v", err)
			}
			if err := d.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestDocker_DiskQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, instance := isolated(t, docker.DefaultIsolation(""))
	if err := d.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	r := d.Isolation()
	info, err := d.Client().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.DiskQuotaProbed || r.StorageDriver != info.Driver {
		t.Fatalf("report = %+v, want probed, with driver %s", r, info.Driver)
	}
	// fuse-overlayfs and vfs never bound a layer; overlay2 does on xfs
	// with pquota only.
	if (info.Driver == "fuse-overlayfs" || info.Driver == "vfs") && r.DiskQuotaSupported {
		t.Errorf("the probe says %s supports disk quotas", info.Driver)
	}
	id, err := created(d.Create(ctx, appSpec(t, instance, "quota", "true")))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove(ctx, id)
	c, err := d.Client().ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.DiskQuotaSupported {
		if got, want := c.HostConfig.StorageOpt["size"], strconv.Itoa(docker.DefaultDiskQuota); got != want {
			t.Errorf("storage opt size = %q, want %q", got, want)
		}
		return
	}
	if len(c.HostConfig.StorageOpt) != 0 {
		t.Errorf("storage opts %v set where the driver refuses them", c.HostConfig.StorageOpt)
	}
	if got, want := r.Details(), []string{"disk quota: unsupported by storage driver " + info.Driver}; !slices.Equal(got, want) {
		t.Errorf("details = %q, want %q", got, want)
	}
	left, err := d.Client().ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", docker.LabelProbe), filters.Arg("label", oneoff.LabelInstance+"="+instance))})
	if err != nil || len(left) > 0 {
		t.Errorf("probe containers left: %v, %v", left, err)
	}
}
