package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	dockerclient "github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// stackName is the name the test deploys docs/swarm-stack.yml under, as
// docs/scale-out.md does.
const stackName = "oneoffd"

// stackUser is the image's user, who must read the node certificate.
const stackUser = 10001

// stackDeploy is a deploy of docs/swarm-stack.yml on a test swarm with the
// docker CLI, as an operator would.
type stackDeploy struct {
	t   *testing.T
	sw  *testenv.Swarm
	env []string // the CLI's: the manager, and the stack file's variables
}

// docker runs the docker CLI against the swarm's manager and returns its
// combined output.
func (s *stackDeploy) docker(timeout time.Duration, args ...string) (string, error) {
	return s.dockerOn(s.sw.Manager().TCPHost, timeout, args...)
}

// dockerOn runs the docker CLI against the engine at host, over TLS with the
// swarm's client certificate.
func (s *stackDeploy) dockerOn(host string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(slices.Clone(s.env), "DOCKER_HOST="+host)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (gave up after %s)", err, timeout)
	}
	return string(out), err
}

// TestSwarmStack_Deploy deploys docs/swarm-stack.yml with `docker stack
// deploy` on a real swarm of two nodes, the image (the Dockerfile's
// runtime stage, see buildStackImage) pulled by the node from the swarm's
// registry:
// the daemon runs on the labelled node with the node certificate it was
// given, runs one-offs on the worker, and `docker stack rm` leaves nothing
// but the data volume, which the operator removes.
func TestSwarmStack_Deploy(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("docker"); err != nil {
		if testenv.InCI() {
			t.Fatalf("the docker CLI is missing, and CI needs it: %v", err)
		}
		t.Skipf("no docker CLI: %v", err)
	}
	start := time.Now()
	phase := func(what string) { t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond)) }

	// Node 0 is the manager and holds the daemon; node 1, a worker, runs
	// the one-offs (--placement=node.role==worker).
	sw := testenv.StartSwarm(t, testenv.SwarmOptions{Nodes: 2})
	phase("swarm ready")
	home, worker := sw.Manager(), sw.Nodes[1]
	ref := buildStackImage(t, sw)
	phase("image built and pushed")

	tlsDir := nodeTLSDir(t, sw)
	token := randomHex(t, 16)
	s := &stackDeploy{t: t, sw: sw, env: append(os.Environ(), append(sw.Env(),
		"ONEOFFD_MANAGER="+home.IP,
		"ONEOFFD_IMAGE="+ref,
		"ONEOFFD_TOKEN="+token,
		"ONEOFFD_ATTACH_HOST="+net.JoinHostPort(home.IP, "5000"),
		"ONEOFFD_NODE_TLS="+tlsDir,
	)...)}
	if out, err := s.docker(time.Minute, "node", "update", "--label-add", "oneoffd=yes", home.Name); err != nil {
		t.Fatalf("docker node update: %v\n%s", err, out)
	}

	removed := false
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.docker(time.Minute, "service", "ps", "--no-trunc", stackName+"_oneoffd")
			t.Logf("docker service ps:\n%s", out)
			out, _ = s.docker(time.Minute, "service", "logs", "--timestamps", stackName+"_oneoffd")
			t.Logf("docker service logs:\n%s", out)
		}
		if !removed {
			if out, err := s.docker(time.Minute, "stack", "rm", stackName); err != nil {
				t.Errorf("docker stack rm: %v\n%s", err, out)
			}
		}
	})
	out, err := s.docker(2*time.Minute, "stack", "deploy", "-c", "../docs/swarm-stack.yml", stackName)
	if err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	// The CLI names what a stack cannot have and deploys without it.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(line), "ignor") || strings.Contains(strings.ToLower(line), "unsupported") {
			t.Errorf("docker stack deploy: %s", line)
		}
	}
	t.Logf("docker stack deploy:\n%s", out)

	api := "http://" + net.JoinHostPort(home.IP, "8080")
	waitReady(t, api+"/readyz")
	phase("the daemon ready")
	d := &daemon{t: t, api: api, token: token}

	t.Run("the service", func(t *testing.T) {
		svc := s.service()
		c := svc.Spec.TaskTemplate.ContainerSpec
		if !c.ReadOnly {
			t.Errorf("the container's root file system is writable, want read_only")
		}
		if !slices.Contains(c.CapabilityDrop, "ALL") {
			t.Errorf("capabilities dropped = %v, want ALL", c.CapabilityDrop)
		}
		var tmp bool
		for _, m := range c.Mounts {
			tmp = tmp || (m.Type == "tmpfs" && m.Target == "/tmp")
		}
		if !tmp {
			t.Errorf("mounts = %+v, want a tmpfs on /tmp", c.Mounts)
		}
		if c.StopGracePeriod == nil || *c.StopGracePeriod != 45*time.Second {
			t.Errorf("stop grace period = %v, want 45s", c.StopGracePeriod)
		}
		// The daemon runs where its data is, as the image's user.
		ctr := s.container(home)
		info, err := home.TCPClient(t).ContainerInspect(context.Background(), ctr.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.User != fmt.Sprintf("%d:%d", stackUser, stackUser) {
			t.Errorf("user = %q, want %d:%d", info.Config.User, stackUser, stackUser)
		}
		// The CLI in the container finds the daemon and its token.
		out, err := s.dockerOn(home.TCPHost, time.Minute, "exec", ctr.ID, "oneoff", "health")
		if err != nil || out != "ok "+stackVersion+"\n" {
			t.Errorf("oneoff health in the container: %v: %q, want ok and the version", err, out)
		}
	})

	app := d.deployImageOf(sw.Image)
	code, stdout, stderr := cliOut(t, d, "--app", app, "run", "--no-tty", "echo hello")
	if code != 0 || stdout != "hello\n" {
		t.Errorf("attached run: exit %d, stdout %q, stderr %q; want 0 and hello", code, stdout, stderr)
	}
	if o := d.lastOneOff(app); o.Node != worker.Name {
		t.Errorf("the attached one-off ran on node %q, want the worker %s", o.Node, worker.Name)
	}
	code, stdout, stderr = cliOut(t, d, "--app", app, "run", "--detached", "--tail", "echo hello from a job; echo oops >&2; exit 3")
	if code != 3 || stdout != "hello from a job\n" || !strings.Contains(stderr, "oops\n") {
		t.Errorf("detached run --tail: exit %d, stdout %q, stderr %q; want 3, its stdout and stderr", code, stdout, stderr)
	}
	o := d.lastOneOff(app)
	if o.Node != worker.Name {
		t.Errorf("the detached one-off ran on node %q, want the worker %s", o.Node, worker.Name)
	}
	if f := d.waitFinishedWithin(o.ID, time.Minute); f.Outcome != apitypes.Exited || f.ExitCode == nil || *f.ExitCode != 3 {
		t.Errorf("the detached one-off ended %s/%v (%s), want exited/3", f.Outcome, f.ExitCode, f.Error)
	}
	// Lines of the two streams may be stored in either order.
	got := texts(d.oneOffLines(o.ID))
	slices.Sort(got)
	if want := []string{"stderr:oops", "stdout:hello from a job"}; !slices.Equal(got, want) {
		t.Errorf("the detached one-off's log = %q, want %q", got, want)
	}
	phase("one-offs done")

	if out, err := s.docker(time.Minute, "stack", "rm", stackName); err != nil {
		t.Fatalf("docker stack rm: %v\n%s", err, out)
	}
	removed = true
	s.waitGone()
	phase("the stack removed")
}

// nodeTLSDir returns a directory holding the swarm's client certificate,
// readable by the image's user only, as the stack file wants it on the node.
func nodeTLSDir(t *testing.T, sw *testenv.Swarm) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node-tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"ca.pem": sw.TLS.CACert, "cert.pem": sw.TLS.Cert, "key.pem": sw.TLS.Key}
	for name, from := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, name)
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(to, stackUser, stackUser); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, stackUser, stackUser); err != nil {
		t.Fatal(err)
	}
	return dir
}

// service returns the stack's service.
func (s *stackDeploy) service() swarm.Service {
	s.t.Helper()
	svc, _, err := s.sw.Manager().Client(s.t).ServiceInspectWithRaw(context.Background(), stackName+"_oneoffd", swarm.ServiceInspectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return svc
}

// container returns the stack's running container on node n.
func (s *stackDeploy) container(n *testenv.SwarmNode) container.Summary {
	s.t.Helper()
	list, err := n.Client(s.t).ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.swarm.service.name="+stackName+"_oneoffd"))})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(list) != 1 {
		s.t.Fatalf("%d running oneoffd containers on %s, want 1", len(list), n.Name)
	}
	return list[0]
}

// waitGone waits until the swarm has no service left, no node a container
// or the stack's network, and the only volume left is the daemon's data on
// the labelled node, which it then removes as the operator would.
func (s *stackDeploy) waitGone() {
	s.t.Helper()
	ctx := context.Background()
	stack := filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+stackName))
	deadline := time.Now().Add(time.Minute)
	for {
		var left []string
		services, err := s.sw.Manager().Client(s.t).ServiceList(ctx, swarm.ServiceListOptions{})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, svc := range services {
			left = append(left, "service "+svc.Spec.Name)
		}
		for _, n := range s.sw.Nodes {
			cli := n.Client(s.t)
			ctrs, err := cli.ContainerList(ctx, container.ListOptions{All: true})
			if err != nil {
				s.t.Fatal(err)
			}
			for _, c := range ctrs {
				left = append(left, fmt.Sprintf("container %s (%s) on %s", c.Names[0], c.State, n.Name))
			}
			nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: stack})
			if err != nil {
				s.t.Fatal(err)
			}
			for _, nw := range nets {
				left = append(left, fmt.Sprintf("network %s on %s", nw.Name, n.Name))
			}
			left = append(left, s.volumesLeft(cli, n)...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("a minute after docker stack rm: %s", strings.Join(left, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// docker stack rm keeps the data: the operator removes it.
	home := s.sw.Manager()
	if out, err := s.dockerOn(home.TCPHost, time.Minute, "volume", "rm", stackName+"_data"); err != nil {
		s.t.Errorf("docker volume rm %s_data on %s: %v\n%s", stackName, home.Name, err, out)
	}
	vols, err := home.Client(s.t).VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(vols.Volumes) > 0 {
		s.t.Errorf("%d volume(s) left on %s after docker volume rm, e.g. %s", len(vols.Volumes), home.Name, vols.Volumes[0].Name)
	}
}

// volumesLeft lists the volumes on node n but the stack's data on the
// manager, where the stack puts the daemon.
func (s *stackDeploy) volumesLeft(cli *dockerclient.Client, n *testenv.SwarmNode) []string {
	vols, err := cli.VolumeList(context.Background(), volume.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	var left []string
	for _, v := range vols.Volumes {
		if n.Manager && v.Name == stackName+"_data" {
			continue
		}
		left = append(left, fmt.Sprintf("volume %s on %s", v.Name, n.Name))
	}
	return left
}
