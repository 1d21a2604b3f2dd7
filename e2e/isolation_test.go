package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// deployNamed registers a release of the test image for app.
func (d *daemon) deployNamed(app string) string {
	d.t.Helper()
	if _, err := d.client().Deploy(context.Background(), app, apitypes.Deploy{Image: testenv.Image(d.t)}); err != nil {
		d.t.Fatalf("deploy %s: %v", app, err)
	}
	return app
}

// procStatus runs a one-off of app that prints /proc/self/status, and
// returns its fields.
func (d *daemon) procStatus(t testing.TB, app string) map[string]string {
	t.Helper()
	out, err := d.cli("--app", app, "run", "cat /proc/self/status").CombinedOutput()
	if err != nil {
		t.Fatalf("cat /proc/self/status: %v: %s", err, out)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// checkCaps checks what a one-off of app holds against want.
func (d *daemon) checkCaps(t testing.TB, app string, want []string, nnp string) {
	t.Helper()
	st := d.procStatus(t, app)
	want = slices.Sorted(slices.Values(want))
	for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if got := testenv.CapabilityNames(t, st[field]); !slices.Equal(got, want) {
			t.Errorf("%s = %s = %v, want %v", field, st[field], got, want)
		}
	}
	if got := st["NoNewPrivs"]; got != nnp {
		t.Errorf("NoNewPrivs = %q, want %q", got, nnp)
	}
}

// readyDetails returns the notes of /readyz.
func (d *daemon) readyDetails(t testing.TB) []string {
	t.Helper()
	resp, err := http.Get(d.api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status  string   `json:"status"`
		Details []string `json:"details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d, %v", resp.StatusCode, err)
	}
	return body.Details
}

// inspectNetwork returns the engine's view of an app's network, or a
// not-found error.
func (d *daemon) inspectNetwork(app string) (network.Inspect, error) {
	name, _ := docker.NetworkNames(d.instance, app)
	return testenv.Docker(d.t).NetworkInspect(context.Background(), name, network.InspectOptions{})
}

// containerAddr returns the address of a one-off's container on its network.
func (d *daemon) containerAddr(t testing.TB, id string) string {
	t.Helper()
	for _, c := range d.containers() {
		if c.Labels[oneoff.LabelID] != id {
			continue
		}
		info, err := testenv.Docker(t).ContainerInspect(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range info.NetworkSettings.Networks {
			if ep.IPAddress != "" {
				return ep.IPAddress
			}
		}
	}
	t.Fatalf("one-off %s has no container with an address", id)
	return ""
}

// dial runs a one-off of app that connects to addr:7000, trying for a few
// seconds, and says whether it got through.
func (d *daemon) dial(t *testing.T, app, addr string) bool {
	t.Helper()
	script := fmt.Sprintf("for i in 1 2 3; do echo hi | nc -w 2 %s 7000 && exit 0; sleep 0.2; done; exit 1", addr)
	out, err := d.cli("--app", app, "run", script).CombinedOutput()
	code := exitCode(t, err)
	t.Logf("%s -> %s: exit %d %s", app, addr, code, out)
	return code == 0
}

func TestIsolation_Defaults(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	alpha, beta := d.deployNamed("isolation-alpha"), d.deployNamed("isolation-beta")

	t.Run("a one-off holds the default capabilities only, and no new privileges", func(t *testing.T) {
		d.checkCaps(t, alpha, docker.DefaultCapabilities, "1")
	})

	t.Run("readyz says what the engine cannot enforce, naming only the driver", func(t *testing.T) {
		info, err := testenv.Docker(t).Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := d.readyDetails(t)
		unsupported := []string{"disk quota: unsupported by storage driver " + info.Driver}
		if info.Driver == "fuse-overlayfs" && !slices.Equal(got, unsupported) {
			t.Errorf("details = %q, want %q", got, unsupported)
		}
		if len(got) > 0 && !slices.Equal(got, unsupported) {
			t.Errorf("details = %q, want none or %q", got, unsupported)
		}
	})

	t.Run("one app's one-off cannot reach another app's; its own app's can", func(t *testing.T) {
		listener := d.startDetached(alpha, "while :; do nc -l -p 7000; done", "10m")
		addr := d.containerAddr(t, listener.ID)

		nw, err := d.inspectNetwork(alpha)
		if err != nil {
			t.Fatalf("the app's network while its one-off runs: %v", err)
		}
		_, bridge := docker.NetworkNames(d.instance, alpha)
		if got := nw.Options["com.docker.network.bridge.name"]; got != bridge {
			t.Errorf("bridge = %q, want %q", got, bridge)
		}
		if _, err := net.InterfaceByName(bridge); err != nil {
			t.Errorf("no host interface %s for the app's network: %v", bridge, err)
		}

		if !d.dial(t, alpha, addr) {
			t.Fatal("a one-off cannot reach a one-off of its own app: the test cannot tell isolation from a broken listener")
		}
		if d.dial(t, beta, addr) {
			t.Error("a one-off of another app reached the listener")
		}
		if _, err := d.client().Stop(context.Background(), listener.ID); err != nil {
			t.Fatal(err)
		}
		d.waitFinished(listener.ID)
	})

	t.Run("networks are removed once unused", func(t *testing.T) {
		d.waitNoContainers()
		// Reconcile, which prunes, runs at start-up and every minute.
		d.stop()
		d.restart()
		for _, app := range []string{alpha, beta} {
			if _, err := d.inspectNetwork(app); !cerrdefs.IsNotFound(err) {
				t.Errorf("network of %s after its one-offs ended: %v, want not found", app, err)
			}
		}
	})
}

func TestIsolation_Flags(t *testing.T) {
	t.Parallel()

	t.Run("everything turned down", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "--capabilities", "chown,kill", "--no-new-privileges=false", "--app-networks=false", "--disk-quota", "0")
		app := d.deploy(nil, "")
		d.checkCaps(t, app, []string{"CAP_CHOWN", "CAP_KILL"}, "0")
		want := []string{"disk quota: off", "app networks: off (one-offs of all apps share the default bridge)", "no-new-privileges: off"}
		if got := d.readyDetails(t); !slices.Equal(got, want) {
			t.Errorf("details = %q, want %q", got, want)
		}
		list, err := testenv.Docker(t).NetworkList(context.Background(), network.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", oneoff.LabelInstance+"="+d.instance))})
		if err != nil || len(list) > 0 {
			t.Errorf("networks with app networks off: %v, %v", list, err)
		}
	})

	t.Run("no capabilities at all", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, "--capabilities", "none")
		d.checkCaps(t, d.deploy(nil, ""), nil, "1")
	})

	for _, tt := range []struct{ flag, value, want string }{
		{"--capabilities", "chown,fly", `--capabilities: unknown capability "fly"`},
		{"--capabilities", "all", "capability ALL is refused"},
		{"--disk-quota", "lots", `--disk-quota "lots": give a size`},
	} {
		t.Run("refused: "+tt.flag+" "+tt.value, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binDir+"/oneoffd", "--data-dir", t.TempDir(), "--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0", tt.flag, tt.value)
			out, err := cmd.CombinedOutput()
			if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), tt.want) {
				t.Errorf("exit %d, %q; want 1 and %q", code, out, tt.want)
			}
		})
	}
}
