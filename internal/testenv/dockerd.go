package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// EngineOptions say how to start a test engine.
type EngineOptions struct {
	// Network is where the engine sits; nil makes one of the engine's own.
	Network *Network
	// Node tells the engines of one Network apart: it picks the engine's
	// address (Network.NodeIP) and names.
	Node int
	// Images are loaded from the machine's engine into the test engine;
	// nil loads Image, empty loads none.
	Images []string
	// TLS makes the engine also listen on TCP, port 2376 of its address,
	// with mutual TLS: for the other engines of its Network (a swarm) and
	// for clients that reach it as they would a remote node (TCPClient).
	TLS bool
	// Config holds more daemon.json settings.
	Config map[string]any

	// ca, when set with TLS, signs the engine's server certificate, and
	// client is the client certificate it signed: the engines of a swarm
	// share them. Without, the engine gets a CA of its own.
	ca     *certAuthority
	client EngineTLS
}

// Engine is a dockerd of a test's own, in a network namespace of its own,
// with its own data root, exec root, socket and host name: killing it
// disturbs nothing else. Name lookups fail at once inside its namespace,
// rather than waiting on a name server it cannot reach. It is stopped and
// everything of it removed when the test ends.
type Engine struct {
	// Host is the engine's address for clients: unix:///tmp/ooe-X/nN/d.sock.
	Host string
	// IP is the engine's address on its Network.
	IP string
	// Namespace is the network namespace it runs in, ooe-X-nN.
	Namespace string
	// Hostname is the engine's host name, as its Info.Name and a swarm's
	// node list show it: its Namespace.
	Hostname string
	// TCPHost is tcp://IP:2376 when the engine listens there with TLS,
	// and TLS the files a client needs to.
	TCPHost string
	TLS     EngineTLS

	tb       testing.TB
	dir      string
	execRoot string
	pidfile  string
	socket   string
	config   string
	script   string

	mu     sync.Mutex
	proc   *process
	output *Buffer // all runs' output
}

// StartEngine starts a test engine, loads the images into it and waits
// until it answers. It needs root, iproute2 and docker.io's dockerd, and
// the machine's engine for the images: without them the test is skipped
// on a laptop and fails in CI.
func StartEngine(tb testing.TB, opts EngineOptions) *Engine {
	tb.Helper()
	needNetns(tb)
	images := opts.Images
	if images == nil {
		images = []string{Image(tb)}
	}
	n := opts.Network
	if n == nil {
		n = NewNetwork(tb)
	}
	name := fmt.Sprintf("ooe-%d-n%d", n.Index, opts.Node)
	dir := filepath.Join(n.Dir, fmt.Sprintf("n%d", opts.Node))
	e := &Engine{
		IP: n.NodeIP(opts.Node), Namespace: name, Hostname: name, tb: tb, dir: dir,
		execRoot: filepath.Join(dir, "x"), pidfile: filepath.Join(dir, "d.pid"), socket: filepath.Join(dir, "d.sock"),
		config: filepath.Join(dir, "daemon.json"), script: filepath.Join(dir, "init.sh"), output: &Buffer{},
	}
	e.Host = "unix://" + e.socket
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.teardown)
	if err := n.addNode(name, opts.Node); err != nil {
		tb.Fatalf("test engine %s: %v", name, err)
	}
	hosts := []string{e.Host}
	var tlsCfg map[string]any
	if opts.TLS {
		// With TLS only: dockerd 20.10 waits 15s at start-up on a TCP
		// listener without.
		var err error
		if opts.ca != nil {
			e.TLS = opts.client
			tlsCfg, err = opts.ca.server(filepath.Join(dir, "tls"), e.IP)
		} else {
			e.TLS, tlsCfg, err = makeEngineTLS(filepath.Join(dir, "tls"), e.IP)
		}
		if err != nil {
			tb.Fatalf("test engine %s: certificates: %v", name, err)
		}
		e.TCPHost = "tcp://" + e.IP + ":" + tlsPort
		hosts = append(hosts, e.TCPHost)
	}
	cfg := map[string]any{
		"data-root": filepath.Join(dir, "root"), "exec-root": e.execRoot, "pidfile": e.pidfile, "hosts": hosts,
		"storage-driver": "overlay2", "mtu": 1400, "userland-proxy": false,
		// The containers' cgroups are named after the engine, so that
		// the processes of a killed engine's containers are found.
		"cgroup-parent": "/" + name,
	}
	for k, v := range tlsCfg {
		cfg[k] = v
	}
	for k, v := range opts.Config {
		cfg[k] = v
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(e.config, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	// A name server that refuses at once: nothing listens on the
	// namespace's loopback.
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	script, err := namespaceScript(e.Hostname, resolv)
	if err != nil {
		tb.Fatalf("test engine %s: %v", name, err)
	}
	if err := os.WriteFile(e.script, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	e.start()
	if len(images) > 0 {
		e.load(tb, images)
	}
	return e
}

// Client returns a client for the engine, closed when the test ends.
func (e *Engine) Client(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// Log returns what the engine printed, over all its runs.
func (e *Engine) Log() string { return e.output.String() }

// Kill kills the engine with SIGKILL, as a crash would, and then what a
// crash of the host's dockerd would take with it: its containerd, the
// shims and the containers' processes, all by pid. The containers stay in
// the data root; after Restart the engine shows them as exited.
func (e *Engine) Kill() {
	e.tb.Helper()
	e.mu.Lock()
	p := e.proc
	e.proc = nil
	e.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if err := killAll([]string{e.Namespace}, cgroupDirs(func(n string) bool { return n == e.Namespace })); err != nil {
		e.tb.Errorf("kill test engine %s: %v", e.Namespace, err)
	}
	// What a restart would take for a live containerd and engine.
	for _, f := range []string{e.execRoot, e.pidfile, e.socket} {
		if err := os.RemoveAll(f); err != nil {
			e.tb.Errorf("kill test engine %s: %v", e.Namespace, err)
		}
	}
}

// Restart kills the engine if it runs, then starts it again on the same
// data root and waits until it answers.
func (e *Engine) Restart() {
	e.tb.Helper()
	e.Kill()
	e.start()
}

// start runs dockerd in the engine's namespace and waits until it answers.
func (e *Engine) start() {
	tb := e.tb
	tb.Helper()
	// unshare: a UTS namespace of its own, for the engine's host name.
	cmd := exec.Command("ip", "netns", "exec", e.Namespace, "unshare", "--uts", "sh", e.script, "dockerd", "--config-file", e.config)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &process{cmd: cmd, output: e.output, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start test engine %s: %v", e.Namespace, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	e.mu.Lock()
	e.proc = p
	e.mu.Unlock()

	cli, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			tb.Fatalf("test engine %s exited at start-up:\n%s", e.Namespace, e.Log())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("test engine %s does not answer after 60s: %v\n%s", e.Namespace, err, e.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load copies images from the machine's engine into the test engine.
func (e *Engine) load(tb testing.TB, images []string) {
	tb.Helper()
	machine := Docker(tb)
	cli := e.Client(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := machine.ImageSave(ctx, images)
	if err != nil {
		tb.Fatalf("save %v from the machine's engine: %v", images, err)
	}
	defer rc.Close()
	resp, err := cli.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
	if err != nil {
		tb.Fatalf("load %v into test engine %s: %v", images, e.Namespace, err)
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		tb.Fatalf("load %v into test engine %s: %v", images, e.Namespace, err)
	}
}

// teardown kills the engine and removes its namespace, cgroups and
// directory; the test's log gets the engine's output if the test failed.
func (e *Engine) teardown() {
	e.mu.Lock()
	p := e.proc
	e.proc = nil
	e.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	teardown(e.tb, func(n string) bool { return n == e.Namespace }, e.dir)
	if e.tb.Failed() {
		e.tb.Logf("test engine %s log:\n%s", e.Namespace, e.Log())
	}
}

// namespaceScript is the shell script dockerd is started through inside
// its namespaces. `ip netns exec` gives it a mount namespace of its own and
// a fresh /sys without the cgroup hierarchies, which dockerd needs: they
// are mounted again as in the root namespace. /run gets a tmpfs of its
// own, so that the engine never finds the machine's containerd (or its
// shims' sockets) and starts its own. /etc/resolv.conf becomes resolv, and
// the UTS namespace gets hostname.
func namespaceScript(hostname, resolv string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	b.WriteString("set -e\nmount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup\n")
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		point, fstype := fields[4], tail[0]
		if !strings.HasPrefix(point, "/sys/fs/cgroup/") || (fstype != "cgroup" && fstype != "cgroup2") {
			continue
		}
		var opts []string
		for _, o := range strings.Split(tail[2], ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		mopt := ""
		if len(opts) > 0 {
			mopt = "-o " + strings.Join(opts, ",") + " "
		}
		if fstype == "cgroup" {
			found = true
		}
		fmt.Fprintf(&b, "mkdir -p %s\nmount -t %s %s%s %s\n", point, fstype, mopt, fstype, point)
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("no cgroup v1 hierarchy under /sys/fs/cgroup: the test engine expects cgroup v1 as on the CI machine")
	}
	links, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil {
			fmt.Fprintf(&b, "ln -s %s %s\n", target, l)
		}
	}
	b.WriteString("mount -t tmpfs -o mode=755 run /run\n")
	// A resolv.conf that is a link into /run now leads nowhere, and name
	// lookups go to the loopback's port 53, which refuses them as well.
	fmt.Fprintf(&b, "if [ -f /etc/resolv.conf ]; then mount --bind %s /etc/resolv.conf; fi\n", resolv)
	fmt.Fprintf(&b, "echo %s > /proc/sys/kernel/hostname\nexec \"$@\"\n", hostname)
	return b.String(), nil
}
