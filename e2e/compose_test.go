package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	dockerclient "github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

// composeProject is a run of the repository's docker-compose.yml under a
// project name of its own.
type composeProject struct {
	t     *testing.T
	name  string
	file  string // the repository's docker-compose.yml
	dir   string // project directory: a copy of the repository, and .env
	env   []string
	image string
	// What the classic builder left: build-stage images, step containers.
	buildImages, buildContainers []string
}

// run runs docker-compose on the project and returns its combined output.
func (p *composeProject) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose",
		append([]string{"-p", p.name, "--project-directory", p.dir, "-f", p.file, "--ansi", "never"}, args...)...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (gave up after %s)", err, timeout)
	}
	return string(out), err
}

// TestCompose builds the image with docker-compose.yml from base images made
// on this machine, runs the daemon in its container against the engine, and
// drives it from outside with the CLI: a release, an attached one-off, a
// detached one. Then `docker-compose down -v` must leave nothing behind.
func TestCompose(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if testenv.InCI() {
			t.Fatalf("docker-compose is missing, and CI needs it: %v", err)
		}
		t.Skipf("no docker-compose: %v", err)
	}
	docker := testenv.Docker(t)
	testImage := testenv.Image(t)
	socket, gid := engineSocket(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	p := &composeProject{t: t, name: "oneoffdtest" + randomHex(t, 4), file: filepath.Join(repo, "docker-compose.yml"), dir: t.TempDir()}
	p.image = "oneoffd-test/oneoffd:" + p.name
	copyTree(t, repo, p.dir)
	builder, runtimeBase := testenv.BuildBasesFor(t, p.dir) // for the go.mod copied
	apiPort, attachPort := freePort(t), freePort(t)
	token := randomHex(t, 16)
	// The attach endpoint is published on another port than 5000: the
	// daemon must say so in its attach URLs.
	dotenv := fmt.Sprintf("ONEOFFD_TOKEN=%s\nONEOFFD_ATTACH_HOST=127.0.0.1:%d\nONEOFFD_LOG_LEVEL=debug\n", token, attachPort)
	if err := os.WriteFile(filepath.Join(p.dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(),
		"ONEOFFD_BUILDER_IMAGE="+builder,
		"ONEOFFD_RUNTIME_IMAGE="+runtimeBase,
		"ONEOFFD_IMAGE="+p.image,
		"ONEOFFD_VERSION=compose-test",
		"DOCKER_SOCKET="+socket,
		fmt.Sprintf("DOCKER_GID=%d", gid),
		"ONEOFFD_BIND=127.0.0.1",
		fmt.Sprintf("ONEOFFD_API_PORT=%d", apiPort),
		fmt.Sprintf("ONEOFFD_ATTACH_PORT=%d", attachPort),
	)

	down := false
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := p.run(time.Minute, "logs", "--no-color", "--timestamps")
			t.Logf("docker-compose logs:\n%s", logs)
		}
		if !down {
			if out, err := p.run(2*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "45"); err != nil {
				t.Errorf("docker-compose down: %v\n%s", err, out)
			}
		}
		p.removeImages(docker)
	})

	out, err := p.run(8*time.Minute, "up", "-d", "--build", "oneoffd")
	p.buildImages, p.buildContainers = buildLeftovers(out)
	if err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitReady(t, api+"/readyz")
	ctr := p.container(docker)
	d := &daemon{t: t, api: api, token: token, instance: readInstanceID(t, docker, ctr.ID)}
	instancesMu.Lock()
	instances = append(instances, d.instance)
	instancesMu.Unlock()

	t.Run("image", func(t *testing.T) {
		img, err := docker.ImageInspect(context.Background(), p.image)
		if err != nil {
			t.Fatal(err)
		}
		if got := img.Config.User; got != "10001:10001" {
			t.Errorf("user = %q, want 10001:10001", got)
		}
		if hc := img.Config.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/usr/local/bin/oneoff", "health"}) {
			t.Fatalf("health check = %+v, want CMD /usr/local/bin/oneoff health", hc)
		}
		t.Logf("image %s: %.1f MB", p.image, float64(img.Size)/1e6)
		// The health check as the engine runs it, with no shell.
		out, err := p.run(time.Minute, append([]string{"exec", "-T", "oneoffd"}, img.Config.Healthcheck.Test[1:]...)...)
		if err != nil || out != "ok compose-test\n" {
			t.Errorf("health check in the container: %v: %q, want ok and the version", err, out)
		}
	})

	code, stdout, stderr := cliOut(t, d, "health")
	if code != 0 || stdout != "ok compose-test\n" {
		t.Errorf("oneoff health: exit %d, stdout %q, stderr %q; want ok and the version stamped", code, stdout, stderr)
	}
	const app = "compose"
	if code, stdout, stderr := cliOut(t, d, "--app", app, "deploy", "--image", testImage); code != 0 {
		t.Fatalf("oneoff deploy: exit %d: %s%s", code, stdout, stderr)
	}

	code, stdout, stderr = cliOut(t, d, "--app", app, "run", "--no-tty", "echo hello from compose")
	if code != 0 || stdout != "hello from compose\n" {
		t.Errorf("attached run: exit %d, stdout %q, stderr %q; want 0 and the greeting", code, stdout, stderr)
	}
	code, stdout, stderr = cliOut(t, d, "--app", app, "run", "--detached", "--tail", "echo hello from a job; echo oops >&2; exit 3")
	if code != 3 || stdout != "hello from a job\n" || !strings.Contains(stderr, "oops\n") {
		t.Errorf("detached run --tail: exit %d, stdout %q, stderr %q; want 3, its stdout and stderr", code, stdout, stderr)
	}
	// The CLI in the container finds the daemon and its token by itself.
	out, err = p.run(time.Minute, "exec", "-T", "oneoffd", "oneoff", "ps", "--all")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(rows) != 3 {
		t.Errorf("oneoff ps --all in the container: %v\n%s\nwant the two one-offs", err, out)
	}
	d.waitNoContainers()

	// SIGTERM to the daemon as PID 1: it drains and exits 0.
	if out, err := p.run(2*time.Minute, "stop", "--timeout", "45"); err != nil {
		t.Fatalf("docker-compose stop: %v\n%s", err, out)
	}
	info, err := docker.ContainerInspect(context.Background(), ctr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.ExitCode != 0 {
		t.Errorf("oneoffd exited with status %d after SIGTERM, want 0", info.State.ExitCode)
	}
	if out, err := p.run(2*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "45"); err != nil {
		t.Fatalf("docker-compose down: %v\n%s", err, out)
	}
	down = true
	if left := d.containers(); len(left) > 0 {
		t.Errorf("%d one-off container(s) left after down, e.g. %s", len(left), left[0].Names[0])
	}
	p.checkGone(docker)
}

// container returns the project's oneoffd container.
func (p *composeProject) container(docker *dockerclient.Client) container.Summary {
	p.t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+p.name), filters.Arg("label", "com.docker.compose.service=oneoffd"))})
	if err != nil {
		p.t.Fatal(err)
	}
	if len(list) != 1 {
		p.t.Fatalf("%d oneoffd containers in project %s, want 1", len(list), p.name)
	}
	return list[0]
}

// checkGone fails the test if any container, volume or network of the
// project is left.
func (p *composeProject) checkGone(docker *dockerclient.Client) {
	p.t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+p.name))
	ctrs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		p.t.Fatal(err)
	}
	vols, err := docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		p.t.Fatal(err)
	}
	nets, err := docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		p.t.Fatal(err)
	}
	if len(ctrs)+len(vols.Volumes)+len(nets) > 0 {
		p.t.Errorf("after down: %d container(s), %d volume(s), %d network(s) of project %s left", len(ctrs), len(vols.Volumes), len(nets), p.name)
	}
	managed := filters.NewArgs(filters.Arg("label", oneoff.LabelManaged+"=true"))
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: managed})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, c := range list {
		if c.Labels["com.docker.compose.project"] == p.name {
			p.t.Errorf("one-off container %s of the project left", c.Names[0])
		}
	}
}

// removeImages removes the image the project built, and what the classic
// builder kept of the build: the images of the build stage's steps (a cache
// that would grow with every changed tree) and the container of a step that
// failed. The base images stay, to be reused.
func (p *composeProject) removeImages(docker *dockerclient.Client) {
	ctx := context.Background()
	if _, err := docker.ImageRemove(ctx, p.image, image.RemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		p.t.Logf("remove %s: %v", p.image, err)
	}
	for _, id := range p.buildContainers {
		_ = docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	}
	for _, id := range slices.Backward(p.buildImages) {
		_, _ = docker.ImageRemove(ctx, id, image.RemoveOptions{}) // another build may be using it
	}
}

var (
	buildStep      = regexp.MustCompile(`^Step \d+/\d+ : (\S+)`)
	buildImage     = regexp.MustCompile(`^ ---> ([0-9a-f]{12})$`)
	buildContainer = regexp.MustCompile(`^ ---> Running in ([0-9a-f]{12})$`)
)

// buildLeftovers reads the classic builder's output and returns the images
// of the build stage's steps but its base, and the containers of all steps.
func buildLeftovers(out string) (images, containers []string) {
	from, base := 0, false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := buildStep.FindStringSubmatch(line); m != nil {
			base = strings.EqualFold(m[1], "FROM")
			if base {
				from++
			}
		} else if m := buildContainer.FindStringSubmatch(line); m != nil {
			containers = append(containers, m[1])
		} else if m := buildImage.FindStringSubmatch(line); m != nil {
			if from == 1 && !base {
				images = append(images, m[1])
			}
			base = false
		}
	}
	return images, containers
}

// waitReady waits until url answers 200.
func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 60s: %s", url, last)
}

// readInstanceID reads the daemon's instance id from its data volume.
func readInstanceID(t *testing.T, docker *dockerclient.Client, id string) string {
	t.Helper()
	rc, _, err := docker.CopyFromContainer(context.Background(), id, "/data/instance-id")
	if err != nil {
		t.Fatalf("read the instance id: %v", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatalf("read the instance id: %v", err)
	}
	b, err := io.ReadAll(tr)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		t.Fatalf("read the instance id: %v (got %q)", err, b)
	}
	return strings.TrimSpace(string(b))
}

// engineSocket returns the path of the engine's Unix socket, which the
// container mounts, and the group owning it.
func engineSocket(t *testing.T) (string, uint32) {
	t.Helper()
	path := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		p, ok := strings.CutPrefix(h, "unix://")
		if !ok {
			t.Skipf("DOCKER_HOST=%s is no Unix socket for the container to mount", h)
		}
		path = p
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the engine's socket: %v", err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no owner for %s", path)
	}
	return path, st.Gid
}

// copyTree copies the repository into dir to be the build context, but for
// .git and bin/.
func copyTree(t *testing.T, repo, dir string) {
	t.Helper()
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // edited meanwhile
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if rel == ".git" || rel == "bin" {
			if !d.IsDir() { // a worktree's .git is a file: SkipDir would skip the rest
				return nil
			}
			return filepath.SkipDir
		}
		to := filepath.Join(dir, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy the tree: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestSystemdUnit checks that systemd reads docs/oneoffd.service without a
// complaint, its ExecStart pointed at the binary under test.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("no systemd-analyze: %v", err)
	}
	unit, err := os.ReadFile("../docs/oneoffd.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/local/bin/oneoffd") {
		t.Fatalf("the unit's ExecStart is not /usr/local/bin/oneoffd")
	}
	path := filepath.Join(t.TempDir(), "oneoffd.service")
	unit = []byte(strings.ReplaceAll(string(unit), "\nExecStart=/usr/local/bin/oneoffd", "\nExecStart="+filepath.Join(binDir, "oneoffd")))
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), path) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	} else if len(out) > 0 {
		t.Logf("systemd-analyze verify, on other units:\n%s", out)
	}
}

// TestSwarmStack checks that docs/swarm-stack.yml is a valid stack file
// that runs the daemon on the swarm engine with its node certificate, and
// that it refuses to deploy without the manager's address.
func TestSwarmStack(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if testenv.InCI() {
			t.Fatalf("docker-compose is missing, and CI needs it: %v", err)
		}
		t.Skipf("no docker-compose: %v", err)
	}
	config := func(env ...string) (string, error) {
		cmd := exec.Command("docker-compose", "-f", "../docs/swarm-stack.yml", "config")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := config("ONEOFFD_MANAGER=10.9.8.7", "ONEOFFD_TOKEN=0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"--engine=swarm", "--docker-host=tcp://10.9.8.7:2376", "--node-tls-dir=/etc/oneoffd/node-tls", "mode: host", "replicas: 1", "order: stop-first"} {
		if !strings.Contains(out, want) {
			t.Errorf("the stack lacks %q:\n%s", want, out)
		}
	}
	if out, err := config("ONEOFFD_MANAGER=", "ONEOFFD_TOKEN=x"); err == nil || !strings.Contains(out, "ONEOFFD_MANAGER") {
		t.Errorf("without ONEOFFD_MANAGER: %v, %q; want it refused, naming the variable", err, out)
	}
}
