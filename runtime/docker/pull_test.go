package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// pullTimeout bounds each pull of the tests.
const pullTimeout = 2 * time.Minute

// pushedImage makes an image of random content, pushes it to reg and
// removes it from the engine, so that a pull has to download it; it returns
// the pushed reference, and removes whatever was pulled of it when the
// test ends.
func pushedImage(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	cli := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"a", "b"} {
		data := make([]byte, 256<<10)
		rand.Read(data)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var id [4]byte
	rand.Read(id[:])
	local := fmt.Sprintf("oneoffd-test/pull-%x:v1", id)
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, local, image.ImportOptions{})
	if err != nil {
		t.Fatalf("import %s: %v", local, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		t.Fatalf("import %s: %v", local, err)
	}

	ref := reg.Push(t, local)
	remove := func(ref string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", ref, err)
		}
	}
	// Both tags go, and with them the image.
	remove(local)
	remove(ref)
	t.Cleanup(func() { remove(ref) })
	return ref
}

// progressLog keeps what a pull reported.
type progressLog struct {
	mu   sync.Mutex
	seen []oneoff.PullProgress
}

func (l *progressLog) add(p oneoff.PullProgress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, p)
}

func (l *progressLog) last(t *testing.T) oneoff.PullProgress {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		t.Fatal("the pull reported no progress")
	}
	return l.seen[len(l.seen)-1]
}

// wantCode checks that err is an errdefs error of class and code.
func wantCode(t *testing.T, err error, class error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", code)
	}
	e, ok := errdefs.As(err)
	if !ok {
		t.Fatalf("err = %v, not an errdefs error; want %s", err, code)
	}
	if e.Code != code {
		t.Errorf("code = %q, want %q (err: %v)", e.Code, code, err)
	}
	if !errors.Is(err, class) {
		t.Errorf("err = %v, want class %v", err, class)
	}
}

func pullCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestDocker_Pull(t *testing.T) {
	t.Parallel()
	d := newDocker(t)
	ctx := pullCtx(t)
	reg := testenv.StartRegistry(t, false)
	ref := pushedImage(t, reg)

	has, err := d.HasImage(ctx, ref)
	if err != nil || has {
		t.Fatalf("before the pull: HasImage = %v, %v; want false, nil", has, err)
	}
	var log progressLog
	if err := d.Pull(ctx, ref, log.add); err != nil {
		t.Fatalf("pull: %v", err)
	}
	has, err = d.HasImage(ctx, ref)
	if err != nil || !has {
		t.Fatalf("after the pull: HasImage = %v, %v; want true, nil", has, err)
	}
	got := log.last(t)
	want := oneoff.PullProgress{Ref: ref, Status: oneoff.PullPulled, Layers: 1, LayersDone: 1, Bytes: got.BytesTotal, BytesTotal: got.BytesTotal}
	if got != want || got.BytesTotal == 0 {
		t.Errorf("final progress = %+v, want %+v with some bytes", got, want)
	}
	if s := got.String(); !strings.HasPrefix(s, "pulled "+ref+": 1/1 layer, ") {
		t.Errorf("final progress says %q, want it to start %q", s, "pulled "+ref+": 1/1 layer, ")
	}

	t.Run("again", func(t *testing.T) {
		var log progressLog
		if err := d.Pull(ctx, ref, log.add); err != nil {
			t.Fatalf("pull: %v", err)
		}
		if got, want := log.last(t), (oneoff.PullProgress{Ref: ref, Status: oneoff.PullUpToDate}); got != want {
			t.Errorf("final progress = %+v, want %+v", got, want)
		}
	})
	t.Run("no such tag", func(t *testing.T) {
		missing := strings.TrimSuffix(ref, ":v1") + ":never-pushed"
		err := d.Pull(ctx, missing, nil)
		wantCode(t, err, errdefs.ErrNotFound, "image_not_found")
		if !strings.Contains(err.Error(), reg.Host()) {
			t.Errorf("err = %v, want it to name the registry %s", err, reg.Host())
		}
	})
	t.Run("no such repository", func(t *testing.T) {
		err := d.Pull(ctx, reg.Host()+"/oneoffd-test/never-pushed:v1", nil)
		wantCode(t, err, errdefs.ErrNotFound, "image_not_found")
	})
}

func TestDocker_PullAuth(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	reg := testenv.StartRegistry(t, true)
	ref := pushedImage(t, reg)

	configFile := func(t *testing.T, user, password string) string {
		t.Helper()
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
		path := filepath.Join(t.TempDir(), "config.json")
		body := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host(), auth)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name string
		// auths are the daemon's credentials; nil for none.
		auths func(t *testing.T) map[string]registry.AuthConfig
		code  string // "" for success
	}{
		{
			name: "right credentials",
			auths: func(t *testing.T) map[string]registry.AuthConfig {
				return map[string]registry.AuthConfig{reg.Host(): {Username: reg.User, Password: reg.Password}}
			},
		},
		{
			name: "right credentials from a config.json",
			auths: func(t *testing.T) map[string]registry.AuthConfig {
				auths, err := docker.LoadDockerConfig(configFile(t, reg.User, reg.Password))
				if err != nil {
					t.Fatal(err)
				}
				return auths
			},
		},
		{
			name: "wrong password",
			auths: func(t *testing.T) map[string]registry.AuthConfig {
				auths, err := docker.LoadDockerConfig(configFile(t, reg.User, "wrong"))
				if err != nil {
					t.Fatal(err)
				}
				return auths
			},
			code: "registry_unauthorized",
		},
		{
			name: "credentials for another registry",
			auths: func(t *testing.T) map[string]registry.AuthConfig {
				return map[string]registry.AuthConfig{"127.0.0.1:1": {Username: reg.User, Password: reg.Password}}
			},
			code: "registry_unauthorized",
		},
		{name: "no credentials", code: "registry_unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDocker(t)
			if tc.auths != nil {
				d.SetRegistryAuth(tc.auths(t))
			}
			err := d.Pull(pullCtx(t), ref, nil)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				return
			}
			wantCode(t, err, errdefs.ErrInvalid, tc.code)
			if !strings.Contains(err.Error(), reg.Host()) {
				t.Errorf("err = %v, want it to name the registry %s", err, reg.Host())
			}
		})
	}
}

func TestDocker_PullErrors(t *testing.T) {
	t.Parallel()
	d := newDocker(t)

	t.Run("malformed reference", func(t *testing.T) {
		for _, ref := range []string{"Bad Ref!", "oneoffd-test/UPPER:v1", "oneoffd-test/x:", ""} {
			err := d.Pull(pullCtx(t), ref, nil)
			wantCode(t, err, errdefs.ErrInvalid, "invalid_image")
			_, err = d.HasImage(pullCtx(t), ref)
			wantCode(t, err, errdefs.ErrInvalid, "invalid_image")
		}
	})
	t.Run("registry unreachable", func(t *testing.T) {
		// A port that was just free, so closed.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		host := l.Addr().String()
		l.Close()
		err = d.Pull(pullCtx(t), host+"/oneoffd-test/nowhere:v1", nil)
		wantCode(t, err, errdefs.ErrUnavailable, "registry_unavailable")
		if !strings.Contains(err.Error(), host) {
			t.Errorf("err = %v, want it to name the registry %s", err, host)
		}
	})
	t.Run("registry stuck", func(t *testing.T) {
		// A registry that takes connections and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = d.Pull(ctx, l.Addr().String()+"/oneoffd-test/stuck:v1", nil)
		wantCode(t, err, errdefs.ErrUnavailable, "pull_timeout")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), "took longer than 2s") {
			t.Errorf("err = %v, want it to say how long the pull was given", err)
		}
	})
	t.Run("engine down", func(t *testing.T) {
		down, err := docker.New("unix:///nonexistent/docker.sock")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		err = down.Pull(pullCtx(t), "127.0.0.1:5000/oneoffd-test/x:v1", nil)
		wantCode(t, err, errdefs.ErrUnavailable, "engine_unavailable")
		_, err = down.HasImage(pullCtx(t), "oneoffd-test/x:v1")
		wantCode(t, err, errdefs.ErrUnavailable, "engine_unavailable")
	})
}

func TestLoadDockerConfig(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name    string
		body    string // "" for no file
		want    map[string]registry.AuthConfig
		wantErr string // in the error; "" for none
	}{
		{
			name: "auth",
			body: `{"auths": {"registry.example:5000": {"auth": "` + b64("ci:s3cr:et") + `"}}}`,
			want: map[string]registry.AuthConfig{
				"registry.example:5000": {Username: "ci", Password: "s3cr:et", ServerAddress: "registry.example:5000"},
			},
		},
		{
			name: "username and password",
			body: `{"auths": {"https://index.docker.io/v1/": {"username": "me", "password": "pw"}}}`,
			want: map[string]registry.AuthConfig{
				"https://index.docker.io/v1/": {Username: "me", Password: "pw", ServerAddress: "https://index.docker.io/v1/"},
			},
		},
		{
			name: "inline auths beside a credsStore",
			body: `{"auths": {"r.example": {"auth": "` + b64("a:b") + `"}}, "credsStore": "desktop"}`,
			want: map[string]registry.AuthConfig{"r.example": {Username: "a", Password: "b", ServerAddress: "r.example"}},
		},
		{name: "no auths", body: `{}`, want: map[string]registry.AuthConfig{}},
		{name: "missing file", wantErr: "no such file"},
		{name: "malformed JSON", body: `{"auths": {`, wantErr: "not a docker config.json"},
		{name: "auth not base64", body: `{"auths": {"r.example": {"auth": "%%%"}}}`, wantErr: "not base64"},
		{name: "auth without a colon", body: `{"auths": {"r.example": {"auth": "` + b64("nocolon") + `"}}}`, wantErr: "user:password"},
		{name: "credsStore only", body: `{"auths": {"r.example": {}}, "credsStore": "desktop"}`, wantErr: `credential helper "desktop"`},
		{name: "credsStore and no auths", body: `{"credsStore": "pass"}`, wantErr: `credential helper "pass"`},
		{name: "credHelpers", body: `{"credHelpers": {"r.example": "ecr-login"}}`, wantErr: `credential helper "ecr-login"`},
		{name: "entry without credentials", body: `{"auths": {"r.example": {}}}`, wantErr: "has no credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if tc.body != "" {
				if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := docker.LoadDockerConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDocker_CanPull(t *testing.T) {
	t.Parallel()
	d := newDocker(t)
	ctx := pullCtx(t)
	reg := testenv.StartRegistry(t, false)
	ref := pushedImage(t, reg)

	if err := d.CanPull(ctx, ref); err != nil {
		t.Fatalf("an image its registry has: %v", err)
	}
	if has, err := d.HasImage(ctx, ref); err != nil || has {
		t.Errorf("after the check: HasImage = %v, %v; want false: a check pulls nothing", has, err)
	}
	err := d.CanPull(ctx, strings.TrimSuffix(ref, ":v1")+":never-pushed")
	if err == nil {
		t.Fatal("a tag its registry does not have: got no error")
	}
	if !strings.Contains(err.Error(), reg.Host()) {
		t.Errorf("err = %v, want it to name the registry %s", err, reg.Host())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	err = d.CanPull(ctx, host+"/oneoffd-test/nowhere:v1")
	wantCode(t, err, errdefs.ErrUnavailable, "registry_unavailable")
	err = d.CanPull(ctx, "Bad Ref!")
	wantCode(t, err, errdefs.ErrInvalid, "invalid_image")
}
