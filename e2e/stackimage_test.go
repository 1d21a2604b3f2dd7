package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// stackVersion is the version the stack's image reports.
const stackVersion = "stack-test"

// systemCAs is where Debian keeps the CA certificates the Dockerfile's build
// stage copies into the image.
const systemCAs = "/etc/ssl/certs/ca-certificates.crt"

// buildStackImage makes the oneoffd image the stack deploys, pushes it into
// the swarm's registry and returns its reference there. TestCompose proves
// the Dockerfile builds; here the stack file is under test, so the image is
// made in seconds: the two binaries built on this machine as the build stage
// builds them, the files that stage adds, on scratch (the tests' runtime
// base) with the runtime stage's configuration read from the Dockerfile.
// The local image is removed when the test ends.
func buildStackImage(t *testing.T, sw *testenv.Swarm) string {
	t.Helper()
	docker := testenv.Docker(t)
	changes := runtimeConfig(t, "../Dockerfile")
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a cold build cache, on a loaded machine
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/oneoffd/oneoffd/internal/version.version="+stackVersion,
		"-o", bin+"/", "../cmd/oneoffd", "../cmd/oneoff")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ref := "oneoffd-test/oneoffd:stack" + randomHex(t, 4)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeStackRoot(pw, bin)) }()
	rc, err := docker.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		pr.CloseWithError(err)
		t.Fatalf("import %s: %v", ref, err)
	}
	t.Cleanup(func() {
		if _, err := docker.ImageRemove(context.Background(), ref, image.RemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", ref, err)
		}
	})
	err = jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil)
	rc.Close()
	pr.CloseWithError(io.ErrClosedPipe) // ends the writer if the engine stopped reading
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	return sw.Push(t, ref)
}

// writeStackRoot writes, as a tar, the file system the Dockerfile's build
// stage gives the image: the binaries in bin, the CA certificates, /tmp
// writable by all, and /data, the daemon's, which a new volume copies.
func writeStackRoot(w io.Writer, bin string) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: owner, Gid: owner, ModTime: epoch})
	}
	file := func(name, from string, mode int64) error {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "usr/", "usr/local/", "usr/local/bin/"} {
		if err := dir(d, 0o755, 0); err != nil {
			return err
		}
	}
	if err := dir("tmp/", 0o1777, 0); err != nil {
		return err
	}
	if err := dir("data/", 0o700, stackUser); err != nil {
		return err
	}
	if err := file(strings.TrimPrefix(systemCAs, "/"), systemCAs, 0o644); err != nil {
		return fmt.Errorf("the image needs the system's CA certificates (apt-get install ca-certificates): %w", err)
	}
	for _, name := range []string{"oneoffd", "oneoff"} {
		if err := file("usr/local/bin/"+name, filepath.Join(bin, name), 0o755); err != nil {
			return err
		}
	}
	return tw.Close()
}

// configInstructions are the instructions of the Dockerfile's runtime
// stage that an import takes as they are; the stage's others make files
// (writeStackRoot makes those) or only describe the image.
var configInstructions = []string{"ENV", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "WORKDIR", "STOPSIGNAL"}

// runtimeConfig returns the configuring instructions of the last stage of
// the Dockerfile at path, one a line, for ImageImport's changes. It fails
// the test on an instruction the stack's image cannot make.
func runtimeConfig(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stage []string
	var line strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line.WriteString(strings.TrimSpace(cont) + " ")
			continue
		}
		line.WriteString(text)
		instr := strings.TrimSpace(line.String())
		line.Reset()
		if strings.HasPrefix(strings.ToUpper(instr), "FROM ") {
			stage = nil
		}
		stage = append(stage, instr)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, instr := range stage {
		word, _, _ := strings.Cut(instr, " ")
		switch word = strings.ToUpper(word); {
		case slices.Contains(configInstructions, word):
			changes = append(changes, instr)
		case word == "FROM" || word == "ARG" || word == "LABEL":
		case word == "COPY" && strings.Contains(instr, "--from=build"):
			// The build stage's files: writeStackRoot's.
		default:
			t.Fatalf("%s: the runtime stage's %q: the stack's image does not make it (see writeStackRoot)", path, instr)
		}
	}
	for _, want := range []string{"USER", "ENTRYPOINT"} {
		if !slices.ContainsFunc(changes, func(c string) bool { return strings.HasPrefix(strings.ToUpper(c), want+" ") }) {
			t.Fatalf("%s: no %s in the runtime stage: %q", path, want, stage)
		}
	}
	return changes
}
