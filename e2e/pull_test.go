package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// pushedRunnable makes an image that runs (the test image plus a layer of
// random bytes, so that a pull has something to download), pushes it to
// reg, and removes it from the engine: a one-off of it needs a pull.
func pushedRunnable(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	cli := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.Image(t), Cmd: []string{"true"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := cli.CopyToContainer(ctx, c.ID, "/", tarOf(t, "payload.bin", data), container.CopyToContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	var id [4]byte
	rand.Read(id[:])
	local := fmt.Sprintf("oneoffd-test/pull-%x:v1", id)
	if _, err := cli.ContainerCommit(ctx, c.ID, container.CommitOptions{Reference: local}); err != nil {
		t.Fatal(err)
	}
	ref := reg.Push(t, local)
	remove := func(ref string) {
		_, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", ref, err)
		}
	}
	remove(local)
	remove(ref)
	t.Cleanup(func() { remove(ref) })
	return ref
}

// dockerConfig writes a docker config.json with reg's credentials.
func dockerConfig(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(reg.User + ":" + reg.Password))
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host(), auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPull(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t, true)
	d := startDaemon(t, "--registry-config", dockerConfig(t, reg))

	t.Run("attached: the user sees the pull, then the command runs", func(t *testing.T) {
		ref := pushedRunnable(t, reg)
		if _, err := d.client().Deploy(context.Background(), "pulled", deploySpec(ref)); err != nil {
			t.Fatal(err)
		}
		cmd := d.cli("--app", "pulled", "run", "--no-tty", "ls -l /payload.bin")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %s", err, stderr.String())
		}
		if !strings.Contains(string(out), "1048576") {
			t.Errorf("stdout %q: the image's own file is not there", out)
		}
		for _, want := range []string{"oneoffd: pulling image " + ref, "oneoffd: image pulled"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), want)
			}
		}
	})
	t.Run("detached: the pull is in its log", func(t *testing.T) {
		ref := pushedRunnable(t, reg)
		if _, err := d.client().Deploy(context.Background(), "pulled-detached", deploySpec(ref)); err != nil {
			t.Fatal(err)
		}
		cmd := d.cli("--app", "pulled-detached", "run", "--detached", "--tail", "echo ran")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || string(out) != "ran\n" {
			t.Fatalf("%v, %q: %s", err, out, stderr.String())
		}
		if !strings.Contains(stderr.String(), "oneoffd: pulled image "+ref) {
			t.Errorf("stderr %q does not record the pull", stderr.String())
		}
	})
	t.Run("a pull that cannot work says why, at the deploy", func(t *testing.T) {
		nocreds := startDaemon(t) // no registry credentials
		ref := pushedRunnable(t, reg)
		for i, tt := range []struct {
			d           *daemon
			image, want string
		}{
			{nocreds, ref, "registry " + reg.Host() + " wants credentials to pull " + ref + ", and the daemon has none for it"},
			{d, reg.Host() + "/oneoffd-test/never-pushed:v1", "does not exist"},
			{d, "127.0.0.1:1/oneoffd-test/nowhere:v1", "127.0.0.1:1"},
		} {
			app := fmt.Sprintf("fails-%d", i)
			out, err := tt.d.cli("--app", app, "deploy", "--image", tt.image).CombinedOutput()
			if exitCode(t, err) == 0 || !strings.Contains(string(out), "cannot pull it: ") || !strings.Contains(string(out), tt.want) ||
				strings.Contains(string(out), "Error response from daemon") {
				t.Errorf("deploy %s: got %v, %q; want a refusal saying %q, without the engine's words", tt.image, err, out, tt.want)
			}
			if _, err := tt.d.client().App(context.Background(), app); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("deploy %s: the app is %v, want no release recorded", tt.image, err)
			}
		}
		nocreds.waitNoContainers()
	})
	d.waitNoContainers()
}

func tarOf(t *testing.T, name string, data []byte) io.Reader {
	t.Helper()
	return tarWithData(t, name, data)
}
