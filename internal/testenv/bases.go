package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// caBundle is where Debian keeps the system's CA certificates; the
// Dockerfile copies it from the builder into the runtime image.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// goroot is where the builder image holds the Go toolchain, as in the
// official golang images.
const goroot = "/usr/local/go"

var (
	basesMu sync.Mutex
	bases   = map[string]string{} // module dir: builder
)

// BuildBases returns the base images the Dockerfile's two stages build
// from, made on this machine since no registry can be reached. builder holds
// this machine's Go toolchain, a static busybox as its shell, and the
// modules go.mod needs, served to the build through GOPROXY=file:// so that
// the Dockerfile's own `go mod download` runs as it would anywhere else.
// runtime is "scratch", which needs no image. The builder's tags are hashes
// of what it holds, so that runs reuse it.
func BuildBases(tb testing.TB) (builder, runtime string) {
	tb.Helper()
	return BuildBasesFor(tb, "")
}

// BuildBasesFor is BuildBases for the go.mod in dir, a copy of the
// repository, rather than the one of the working directory.
func BuildBasesFor(tb testing.TB, dir string) (builder, runtime string) {
	tb.Helper()
	cli := Docker(tb)
	basesMu.Lock()
	defer basesMu.Unlock()
	if ref, ok := bases[dir]; ok {
		return ref, "scratch"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ref, err := buildBuilder(ctx, cli, dir)
	if err != nil {
		tb.Fatalf("build the base images: %v", err)
	}
	bases[dir] = ref
	return ref, "scratch"
}

// buildBuilder makes the builder in two images, so that a change of go.mod
// does not import the toolchain again: oneoffd-test/go, the toolchain and
// busybox, imported as one layer; then oneoffd-test/builder, that plus a
// layer holding the module proxy.
func buildBuilder(ctx context.Context, cli *client.Client, dir string) (string, error) {
	toolchain, err := importToolchain(ctx, cli)
	if err != nil {
		return "", fmt.Errorf("toolchain image: %w", err)
	}
	mods, err := moduleFiles(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("modules for the build: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "builder v1\n%s\n", toolchain)
	for _, m := range mods {
		fmt.Fprintln(h, m)
	}
	ref := "oneoffd-test/builder:" + hex.EncodeToString(h.Sum(nil))[:12]
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	dockerfile := "FROM " + toolchain + "\n" +
		"COPY goproxy /goproxy\n" +
		// go.sum still checks every module; the checksum database cannot be reached.
		"ENV GOPROXY=file:///goproxy GOSUMDB=off\n"
	cacheDir, err := goEnv(ctx, "GOMODCACHE")
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := addFile(tw, "Dockerfile", []byte(dockerfile), 0o644)
		for _, m := range mods {
			if err != nil {
				break
			}
			err = copyFile(tw, filepath.Join(cacheDir, "cache", "download", m), "goproxy/"+m)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := readStream(resp.Body); err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	removeStale(ctx, cli, "oneoffd-test/builder", ref)
	removeStale(ctx, cli, "oneoffd-test/go", toolchain)
	return ref, nil
}

// removeStale removes the images of repo other than keep: builders for
// go.mods, toolchains for Go versions, gone by. An image in use stays.
func removeStale(ctx context.Context, cli *client.Client, repo, keep string) {
	list, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	if err != nil {
		return
	}
	for _, img := range list {
		for _, tag := range img.RepoTags {
			if tag != keep && strings.HasPrefix(tag, repo+":") {
				_, _ = cli.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true})
			}
		}
	}
}

// importToolchain imports, once per toolchain, an image holding GOROOT at
// /usr/local/go, a static busybox with its applets in /bin, and the CA
// bundle.
func importToolchain(ctx context.Context, cli *client.Client) (string, error) {
	root, err := goEnv(ctx, "GOROOT")
	if err != nil {
		return "", err
	}
	version, err := goEnv(ctx, "GOVERSION")
	if err != nil {
		return "", err
	}
	platform, err := goEnv(ctx, "GOOS")
	if err != nil {
		return "", err
	}
	arch, err := goEnv(ctx, "GOARCH")
	if err != nil {
		return "", err
	}
	bb, err := staticBusybox()
	if err != nil {
		return "", err
	}
	bbBody, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	listing, err := exec.CommandContext(ctx, bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("list busybox applets: %w", err)
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return "", fmt.Errorf("the build needs the system's CA certificates (apt-get install ca-certificates): %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "toolchain v1\n%s %s/%s %s\n", version, platform, arch, root)
	h.Write(bbBody)
	h.Write(ca)
	ref := "oneoffd-test/go:" + hex.EncodeToString(h.Sum(nil))[:12]
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}

	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeToolchain(pw, root, bbBody, strings.Fields(string(listing)), ca))
	}()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{
			"ENV PATH=" + goroot + "/bin:/bin",
			"ENV HOME=/tmp",
			"ENV GOPATH=/tmp/go",
			"ENV GOCACHE=/tmp/go-cache",
			"ENV CGO_ENABLED=0",
			"ENV GOTOOLCHAIN=local",
			`CMD ["/bin/sh"]`,
		},
	})
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	defer rc.Close()
	if err := readStream(rc); err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	return ref, nil
}

// writeToolchain writes the toolchain image's root file system as a tar.
func writeToolchain(w io.Writer, root string, busybox []byte, applets []string, ca []byte) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	for _, dir := range []string{"bin/", "etc/", "etc/ssl/", "etc/ssl/certs/", "tmp/", "usr/", "usr/local/"} {
		mode := int64(0o755)
		if dir == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: mode, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := addFile(tw, "bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := addFile(tw, "etc/passwd", []byte("root:x:0:0:root:/tmp:/bin/sh\n"), 0o644); err != nil {
		return err
	}
	if err := addFile(tw, "etc/group", []byte("root:x:0:\n"), 0o644); err != nil {
		return err
	}
	if err := addFile(tw, strings.TrimPrefix(caBundle, "/"), ca, 0o644); err != nil {
		return err
	}
	// GOROOT but what building needs not: its own tests, docs and API lists.
	skip := map[string]bool{"test": true, "doc": true, "misc": true, "api": true}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (skip[rel] || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		name := strings.TrimPrefix(goroot, "/")
		if rel != "." {
			name += "/" + filepath.ToSlash(rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = name, 0, 0, "", ""
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// moduleFiles lists the files of the host's module cache, relative to its
// cache/download directory, that a GOPROXY needs to serve for this module's
// go.mod: each required module's .info, .mod and .zip, and the .mod of
// every module in the graph. It works on a copy of moduleDir's go.mod and
// go.sum, and may complete the host's cache with downloads.
func moduleFiles(ctx context.Context, moduleDir string) ([]string, error) {
	if moduleDir == "" {
		gomod, err := goEnv(ctx, "GOMOD")
		if err != nil {
			return nil, err
		}
		if gomod == "" || gomod == os.DevNull {
			return nil, errors.New("not inside the oneoffd module")
		}
		moduleDir = filepath.Dir(gomod)
	}
	dir, err := os.MkdirTemp("", "oneoffd-modules-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(moduleDir, f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	goCmd := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	out, err := goCmd("mod", "download", "-json")
	if err != nil {
		return nil, err
	}
	cache, err := goEnv(ctx, "GOMODCACHE")
	if err != nil {
		return nil, err
	}
	download := filepath.Join(cache, "cache", "download")
	seen := map[string]bool{}
	var files []string
	add := func(path string) {
		rel, err := filepath.Rel(download, path)
		if err == nil && !strings.HasPrefix(rel, "..") && !seen[rel] {
			seen[rel] = true
			files = append(files, filepath.ToSlash(rel))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m struct{ Path, Version, Info, GoMod, Zip, Error string }
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go mod download: %w", err)
		}
		if m.Error != "" {
			return nil, fmt.Errorf("go mod download %s@%s: %s", m.Path, m.Version, m.Error)
		}
		for _, f := range []string{m.Info, m.GoMod, m.Zip} {
			if f != "" {
				add(f)
			}
		}
	}
	graph, err := goCmd("mod", "graph")
	if err != nil {
		return nil, err
	}
	for _, node := range strings.Fields(string(graph)) {
		path, version, ok := strings.Cut(node, "@")
		if !ok || path == "go" || path == "toolchain" {
			continue
		}
		base := filepath.Join(download, escapeModule(path), "@v", escapeModule(version))
		for _, ext := range []string{".info", ".mod"} {
			if _, err := os.Stat(base + ext); err == nil {
				add(base + ext)
			}
		}
	}
	slices.Sort(files)
	return files, nil
}

// escapeModule escapes a module path or version as the module cache and
// GOPROXY do: an upper-case letter becomes '!' and its lower case.
func escapeModule(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// staticBusybox finds Debian's busybox-static.
func staticBusybox() (string, error) {
	for _, p := range busyboxPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if out, err := exec.Command("file", "-L", p).Output(); err == nil && strings.Contains(string(out), "dynamically linked") {
			return "", fmt.Errorf("%s is dynamically linked: install Debian's busybox-static instead of busybox", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("no busybox at %v: install Debian's busybox-static (apt-get install busybox-static)", busyboxPaths)
}

func goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func addFile(tw *tar.Writer, name string, body []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

// copyFile adds the file at path to the tar as name, readable by all.
func copyFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: info.Size(), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// readStream reads the engine's JSON progress stream to its end and returns
// the error it reports, if any.
func readStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return m.Error
		}
	}
}
