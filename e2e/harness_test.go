// Package e2e tests oneoffd end to end: the real binaries, the real Docker
// engine, the CLI driven in a real pseudo-terminal.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dockerclient "github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

var (
	binDir string
	// instances lists the instance ids of every daemon the tests started,
	// to check at the end that none left a container behind.
	instancesMu sync.Mutex
	instances   []string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oneoffd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	args := []string{"build", "-o", binDir + "/"}
	if os.Getenv("ONEOFFD_E2E_RACE") != "" {
		args = append(args, "-race") // the binaries under test with the race detector
	}
	build := exec.Command("go", append(args, "../cmd/oneoffd", "../cmd/oneoff")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := checkNoContainersLeft(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

// checkNoContainersLeft fails the suite if any daemon it started left a
// container with its labels on the engine.
func checkNoContainersLeft() error {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	if len(instances) == 0 {
		return nil
	}
	cli := testenv.Docker(&testing.T{})
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelManaged+"=true"))
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: args})
	if err != nil {
		return err
	}
	mine := map[string]bool{}
	for _, id := range instances {
		mine[id] = true
	}
	var left []string
	for _, c := range list {
		if mine[c.Labels[oneoff.LabelInstance]] {
			left = append(left, c.Names[0]+" ("+c.State+")")
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("containers left behind: %s", strings.Join(left, ", "))
	}
	return checkNoNetworksLeft(cli, mine)
}

// checkNoNetworksLeft removes the app networks the daemons left behind,
// and fails the suite if there were any: a daemon removes those it no
// longer uses when it stops.
func checkNoNetworksLeft(cli *dockerclient.Client, mine map[string]bool) error {
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelManaged+"=true"))
	list, err := cli.NetworkList(context.Background(), network.ListOptions{Filters: args})
	if err != nil {
		return err
	}
	var left []string
	for _, n := range list {
		if mine[n.Labels[oneoff.LabelInstance]] {
			left = append(left, n.Name)
			_ = cli.NetworkRemove(context.Background(), n.ID)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("networks left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

// daemon is an oneoffd process started for a test.
type daemon struct {
	t        testing.TB
	dataDir  string
	args     []string
	api      string // http://127.0.0.1:PORT
	attach   string // 127.0.0.1:PORT
	token    string
	instance string
	cmd      *exec.Cmd
	logs     *testenv.Buffer
	exited   chan struct{}
	// wrapper, if set, is the command the daemon runs under, such as
	// prlimit with its options.
	wrapper []string
}

// startDaemon starts oneoffd on free loopback ports with a fresh data dir
// and extra flags, and stops it when the test ends.
func startDaemon(t testing.TB, extra ...string) *daemon {
	t.Helper()
	testenv.Docker(t)
	d := &daemon{t: t, dataDir: t.TempDir()}
	d.args = append([]string{"--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0",
		"--data-dir", d.dataDir, "--log-level", "debug", "--log-format", "json"}, extra...)
	d.start()
	t.Cleanup(func() { d.stop(); d.removeLeftovers() })
	return d
}

// removeLeftovers force-removes the containers and networks of the
// daemon's instance on the machine's engine: a failed test may leave a detached job running,
// which a stopped daemon leaves for its next start. The suite's own check
// for leftovers only runs when every test passed.
func (d *daemon) removeLeftovers() {
	if !d.t.Failed() || d.instance == "" {
		return
	}
	cli := testenv.Docker(d.t)
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+d.instance))
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: args})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
	// And the app networks those containers kept.
	nets, err := cli.NetworkList(context.Background(), network.ListOptions{Filters: args})
	if err != nil {
		return
	}
	for _, n := range nets {
		_ = cli.NetworkRemove(context.Background(), n.ID)
	}
}

// start runs the daemon process on the data dir and waits until it is ready.
func (d *daemon) start() {
	t := d.t
	t.Helper()
	name, args := filepath.Join(binDir, "oneoffd"), d.args
	if len(d.wrapper) > 0 {
		name, args = d.wrapper[0], append(append(slices.Clone(d.wrapper[1:]), name), args...)
	}
	d.cmd = exec.Command(name, args...)
	d.cmd.Env = append(os.Environ(), "ONEOFFD_DATA_DIR=") // flags only
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start oneoffd: %v", err)
	}
	d.exited = make(chan struct{})
	ready := make(chan map[string]any, 1)
	if d.logs == nil {
		d.logs = &testenv.Buffer{}
	}
	go func() {
		defer close(d.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes() // JSON logs, and anything the runtime prints
			d.logs.Write(append(line, '\n'))
			var entry map[string]any
			if json.Unmarshal(line, &entry) == nil && entry["msg"] == "oneoffd ready" {
				ready <- entry
			}
		}
		_ = d.cmd.Wait()
	}()
	select {
	case entry := <-ready:
		d.api = "http://" + entry["api_addr"].(string)
		d.attach = entry["attach_addr"].(string)
	case <-d.exited:
		t.Fatalf("oneoffd exited before it was ready:\n%s", d.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("oneoffd not ready after 30s:\n%s", d.logs.String())
	}
	tok, err := os.ReadFile(filepath.Join(d.dataDir, client.TokenFileName))
	if err != nil {
		t.Fatalf("read generated token: %v", err)
	}
	d.token = strings.TrimSpace(string(tok))
	inst, err := os.ReadFile(filepath.Join(d.dataDir, "instance-id"))
	if err != nil {
		t.Fatalf("read instance id: %v", err)
	}
	d.instance = strings.TrimSpace(string(inst))
	instancesMu.Lock()
	instances = append(instances, d.instance)
	instancesMu.Unlock()
}

// stop sends SIGTERM and waits for the daemon to exit.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("oneoffd did not stop within 60s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("oneoffd exited with status %d after SIGTERM, want 0", code)
	}
	if strings.Contains(d.logs.String(), "WARNING: DATA RACE") {
		d.t.Errorf("the race detector found a data race in oneoffd")
	}
	if d.t.Failed() {
		d.t.Logf("oneoffd log:\n%s", d.logs.String())
	}
}

// kill stops the daemon with SIGKILL, as a crash would.
func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// restart starts the daemon again on the same data dir.
func (d *daemon) restart() {
	d.start()
}

func (d *daemon) client() *client.Client { return client.New(d.api, d.token, nil) }

// cli returns the oneoff CLI as a command pointed at this daemon.
func (d *daemon) cli(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "oneoff"), args...)
	cmd.Env = append(os.Environ(), "ONEOFF_API_URL="+d.api, "ONEOFF_API_TOKEN="+d.token, "TERM=xterm")
	return cmd
}

// deploy registers a release of the test image for a fresh app and returns
// the app's name.
func (d *daemon) deploy(env map[string]string, procfile string) string {
	d.t.Helper()
	app := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(d.t.Name()))
	if len(app) > 40 {
		app = app[:40]
	}
	app = strings.Trim(app, "-")
	_, err := d.client().Deploy(context.Background(), app, apitypes.Deploy{Image: testenv.Image(d.t), Env: env, Procfile: procfile})
	if err != nil {
		d.t.Fatalf("deploy %s: %v", app, err)
	}
	return app
}

// waitFinished polls a one-off until it has finished, and returns it.
func (d *daemon) waitFinished(id string) apitypes.OneOff {
	d.t.Helper()
	return d.waitFinishedWithin(id, 30*time.Second)
}

// waitFinishedWithin polls a one-off until it has finished, for up to
// timeout, and returns it.
func (d *daemon) waitFinishedWithin(id string, timeout time.Duration) apitypes.OneOff {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o, err := d.client().OneOff(context.Background(), id)
		if err != nil {
			d.t.Fatalf("get one-off %s: %v", id, err)
		}
		if o.State == apitypes.Finished {
			return o
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("one-off %s still %s after %s", id, o.State, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containers lists the engine's containers of this daemon.
func (d *daemon) containers() []container.Summary {
	d.t.Helper()
	cli := testenv.Docker(d.t)
	args := filters.NewArgs(filters.Arg("label", oneoff.LabelInstance+"="+d.instance))
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: args})
	if err != nil {
		d.t.Fatal(err)
	}
	return list
}

// waitNoContainers waits until the daemon has no container left.
func (d *daemon) waitNoContainers() {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list := d.containers()
		if len(list) == 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%d container(s) still there after 30s, e.g. %s (%s)", len(list), list[0].Names[0], list[0].State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
