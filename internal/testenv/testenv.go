// Package testenv gives tests what they need from the machine: a Docker
// engine that answers, a small image built locally from a static busybox,
// since no registry can be reached, and servers of a test's own: image
// registries, engines in network namespaces (StartEngine), and Docker
// Swarms of such engines (StartSwarm).
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// busyboxPaths are where Debian's busybox-static installs its binary.
var busyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Docker returns a client for the local engine. Without an engine the test
// is skipped on a laptop and fails in CI.
func Docker(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx)
	}
	if err != nil {
		if InCI() {
			tb.Fatalf("the Docker engine does not answer, and CI needs it: %v", err)
		}
		tb.Skipf("no Docker engine: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

// Image returns the reference of a tiny image holding a static busybox with
// a link for each applet (sh, cat, stty, sleep, ...), importing it into the
// engine the first time. Its tag is the hash of its content, so that test
// binaries running side by side agree on it.
func Image(tb testing.TB) string {
	tb.Helper()
	cli := Docker(tb)
	imageOnce.Do(func() { imageRef, imageErr = importBusybox(cli) })
	if imageErr != nil {
		tb.Fatalf("build the test image: %v", imageErr)
	}
	return imageRef
}

func importBusybox(cli *client.Client) (string, error) {
	var bin string
	for _, p := range busyboxPaths {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return "", fmt.Errorf("no busybox at %v: install Debian's busybox-static (apt-get install busybox-static)", busyboxPaths)
	}
	if out, err := exec.Command("file", "-L", bin).Output(); err == nil && strings.Contains(string(out), "dynamically linked") {
		return "", fmt.Errorf("%s is dynamically linked: install Debian's busybox-static instead of busybox", bin)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	listing, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("list busybox applets: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, dir := range []string{"bin/", "tmp/", "etc/", "root/"} {
		mode := int64(0o755)
		if dir == "tmp/" {
			mode = 0o1777
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: mode, ModTime: epoch})
	}
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(body)), ModTime: epoch})
	_, _ = tw.Write(body)
	for _, applet := range strings.Fields(string(listing)) {
		if applet == "busybox" {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", ModTime: epoch})
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), ModTime: epoch})
	_, _ = io.WriteString(tw, passwd)
	if err := tw.Close(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	ref := "oneoffd-test/busybox:" + hex.EncodeToString(sum[:6])

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{`ENV PATH=/bin`, `CMD ["/bin/sh"]`},
	})
	if err != nil {
		return "", fmt.Errorf("import image: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", fmt.Errorf("import image: %w", err)
	}
	return ref, nil
}
