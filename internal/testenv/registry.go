package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// A real image registry for the pull tests: Debian's docker-registry (the
// CNCF distribution registry), serving plain HTTP on a free port of
// 127.0.0.1, which the engine treats as an insecure registry by default,
// or of another address of the machine, such as a test Network's HostIP
// for the test engines that list it in their insecure-registries. With
// auth it asks for basic credentials from an htpasswd file, whose bcrypt
// line comes from htpasswd of apache2-utils.

// registryBin is where Debian's docker-registry installs the registry.
const registryBin = "/usr/bin/docker-registry"

// registryReadyTimeout bounds the registry's start and stop.
const registryReadyTimeout = 15 * time.Second

// registryPushTimeout bounds a push of a test image.
const registryPushTimeout = 2 * time.Minute

// registryConf is the config: $1 the work directory, $2 the address, $3 the
// auth section.
const registryConf = `# written by testenv for the tests
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %[1]s/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %[2]s
  secret: oneoffd-test-secret
health:
  storagedriver:
    enabled: false
%[3]s`

// registryAuthConf is the auth section with basic auth: $1 the work
// directory.
const registryAuthConf = `auth:
  htpasswd:
    realm: oneoffd-test
    path: %[1]s/htpasswd
`

// Registry is a running image registry, stopped when the test that started
// it ends.
type Registry struct {
	// User and Password are the credentials the registry asks for, when
	// started with auth; empty otherwise.
	User, Password string

	tb    testing.TB
	dir   string
	ip    string
	group string // the cgroup of its process, if any
	port  int
	proc  *process // while it runs
}

// StartRegistry starts a registry on a free port of 127.0.0.1 and waits
// until it answers. With auth it asks for User and Password. Without
// docker-registry the test is skipped on a laptop and fails in CI.
func StartRegistry(tb testing.TB, auth bool) *Registry {
	tb.Helper()
	return StartRegistryOn(tb, "127.0.0.1", auth)
}

// StartRegistryOn is StartRegistry on a free port of ip, an address of the
// machine: a Network's HostIP makes the registry reachable from the test
// engines of that Network.
func StartRegistryOn(tb testing.TB, ip string, auth bool) *Registry {
	tb.Helper()
	return startRegistry(tb, ip, auth, nil)
}

// startRegistry is StartRegistryOn; with owner, the registry's directory
// and its process's cgroup are named after the network, whose teardown
// then finds them, also after the test binary died.
func startRegistry(tb testing.TB, ip string, auth bool, owner *Network) *Registry {
	tb.Helper()
	missing := func(format string, args ...any) {
		tb.Helper()
		msg := fmt.Sprintf(format, args...) + " (apt-get install docker-registry apache2-utils)"
		if InCI() {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	if _, err := os.Stat(registryBin); err != nil {
		missing("no registry at %s", registryBin)
	}
	r := &Registry{tb: tb, ip: ip}
	if owner != nil {
		r.dir, r.group = filepath.Join(owner.Dir, "registry"), fmt.Sprintf("ooe-%d-registry", owner.Index)
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			tb.Fatal(err)
		}
	} else {
		r.dir = tb.TempDir()
	}
	var authConf string
	if auth {
		htpasswd, err := exec.LookPath("htpasswd")
		if err != nil {
			missing("no htpasswd to write the registry's password file")
		}
		r.User, r.Password = "oneoffd", "pw-"+randomHex(8)
		// -B: bcrypt, the only hash the registry accepts; -n: to stdout.
		line, err := exec.Command(htpasswd, "-Bbn", r.User, r.Password).Output()
		if err != nil {
			tb.Fatalf("htpasswd: %v", err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "htpasswd"), bytes.TrimSpace(line), 0o600); err != nil {
			tb.Fatal(err)
		}
		authConf = fmt.Sprintf(registryAuthConf, r.dir)
	}
	tb.Cleanup(func() {
		proc := r.proc
		r.stop()
		if tb.Failed() && proc != nil {
			tb.Logf("docker-registry's output:\n%s", proc.output.String())
		}
	})

	deadline := time.Now().Add(registryReadyTimeout)
	for {
		r.port = freePortOn(tb, ip)
		err := r.start(authConf, deadline)
		if err == nil {
			return r
		}
		r.stop()
		if !errors.Is(err, errRegistryPortTaken) || time.Now().After(deadline) {
			tb.Fatalf("start docker-registry: %v", err)
		}
	}
}

var errRegistryPortTaken = errors.New("port taken")

func (r *Registry) start(authConf string, deadline time.Time) error {
	conf := filepath.Join(r.dir, "config.yml")
	text := fmt.Sprintf(registryConf, r.dir, r.Host(), authConf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	p, err := startProcess(registryBin, "serve", conf)
	if err != nil {
		return err
	}
	r.proc = p
	if r.group != "" {
		if err := joinCgroup(r.group, p.cmd.Process.Pid); err != nil {
			return fmt.Errorf("docker-registry into cgroup %s: %w", r.group, err)
		}
	}

	hc := &http.Client{Timeout: time.Second}
	url := "http://" + r.Host() + "/v2/"
	for {
		// The registry answers /v2/ with 200, or 401 with auth.
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-p.exited:
			if strings.Contains(p.output.String(), "address already in use") {
				return fmt.Errorf("%w: %d", errRegistryPortTaken, r.port)
			}
			return fmt.Errorf("docker-registry exited: %s\n%s", p.cmd.ProcessState, p.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("docker-registry not ready after %v:\n%s", registryReadyTimeout, p.output.String())
		}
	}
}

// stop stops the registry with SIGTERM and waits for it to exit.
func (r *Registry) stop() {
	if r.proc == nil {
		return
	}
	r.proc.stop(registryReadyTimeout)
	r.proc = nil
}

// Host returns the registry's address and port, such as 127.0.0.1:PORT, as
// it appears in an image reference.
func (r *Registry) Host() string { return net.JoinHostPort(r.ip, strconv.Itoa(r.port)) }

// AuthConfig returns the registry's credentials as the engine takes them,
// the zero AuthConfig without auth.
func (r *Registry) AuthConfig() registry.AuthConfig {
	if r.User == "" {
		return registry.AuthConfig{}
	}
	return registry.AuthConfig{Username: r.User, Password: r.Password, ServerAddress: r.Host()}
}

// Push tags the local image localRef as HOST/NAME:TAG, where NAME is
// localRef's path with a random suffix, so that every push makes a
// repository of its own, and TAG is localRef's tag; pushes it to the
// registry from the machine's engine; and returns that reference. The
// local tag is removed when the test ends. The machine's engine pushes
// only to a registry it trusts, as one on loopback.
func (r *Registry) Push(tb testing.TB, localRef string) string {
	tb.Helper()
	cli := Docker(tb)
	named, err := reference.ParseNormalizedNamed(localRef)
	if err != nil {
		tb.Fatalf("push %q: %v", localRef, err)
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	ref := fmt.Sprintf("%s/%s-%s:%s", r.Host(), reference.Path(named), randomHex(3), tag)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), registryReadyTimeout)
		defer cancel()
		_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			tb.Errorf("remove %s: %v", ref, err)
		}
	})
	if err := r.push(cli, localRef, ref); err != nil {
		tb.Fatal(err)
	}
	return ref
}

// push tags localRef as ref on the engine cli and pushes ref from there.
func (r *Registry) push(cli *client.Client, localRef, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryPushTimeout)
	defer cancel()
	if err := cli.ImageTag(ctx, localRef, ref); err != nil {
		return fmt.Errorf("tag %s as %s: %w", localRef, ref, err)
	}
	var opts image.PushOptions
	if r.User != "" {
		var err error
		if opts.RegistryAuth, err = registry.EncodeAuthConfig(r.AuthConfig()); err != nil {
			return err
		}
	}
	rc, err := cli.ImagePush(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	defer rc.Close()
	// A failed push is a message in the stream, not an error of the call.
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("push %s: read the engine's messages: %w", ref, err)
		}
		if m.Error != nil {
			return fmt.Errorf("push %s: %s", ref, m.Error.Message)
		}
	}
}

// freePortOn returns a port of ip that was free a moment ago.
func freePortOn(tb testing.TB, ip string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
