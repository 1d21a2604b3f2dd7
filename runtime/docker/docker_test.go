package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

func newDocker(t *testing.T) *docker.Runtime {
	t.Helper()
	testenv.Docker(t)
	d, err := docker.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// spec returns a container spec with labels unique to the test, and removes
// the test's containers when it ends.
func spec(t *testing.T, d *docker.Runtime, cmd ...string) oneoff.Spec {
	t.Helper()
	labels := map[string]string{oneoff.LabelManaged: "true", oneoff.LabelInstance: "runtime-test-" + strings.ReplaceAll(t.Name(), "/", "-")}
	t.Cleanup(func() {
		list, err := d.List(context.Background(), labels)
		if err != nil {
			t.Error(err)
			return
		}
		for _, c := range list {
			_ = d.Remove(context.Background(), c.ID)
		}
	})
	return oneoff.Spec{Image: testenv.Image(t), Cmd: cmd, Labels: labels}
}

func TestDocker_Lifecycle(t *testing.T) {
	t.Parallel()
	d := newDocker(t)
	ctx := context.Background()

	t.Run("attach before start keeps the first output, streams apart", func(t *testing.T) {
		t.Parallel()
		s := spec(t, d, "/bin/sh", "-c", "echo first; echo oops >&2; read line; echo got $line; exit 4")
		s.Stdin = true
		id, err := created(d.Create(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		proc, err := d.Start(ctx, id, oneoff.StartOptions{Attach: true, TTY: false})
		if err != nil {
			t.Fatal(err)
		}
		st, exit := proc.Stream, proc.Exit
		defer st.Close()
		var stdout, stderr testenv.Buffer
		done := make(chan error, 1)
		go func() { done <- st.CopyOutput(&stdout, &stderr) }()
		if _, err := st.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if e := <-exit; e.Err != nil || e.Code != 4 {
			t.Errorf("exit = %+v, want code 4", e)
		}
		if err := <-done; err != nil {
			t.Errorf("copy output: %v", err)
		}
		if got, want := stdout.String(), "first\ngot hello\n"; got != want {
			t.Errorf("stdout = %q, want %q", got, want)
		}
		if got, want := stderr.String(), "oops\n"; got != want {
			t.Errorf("stderr = %q, want %q", got, want)
		}
		if err := d.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := d.Remove(ctx, id); err != nil {
			t.Errorf("removing a removed container: %v, want nil", err)
		}
	})

	t.Run("TTY: resize after start reaches the terminal", func(t *testing.T) {
		t.Parallel()
		s := spec(t, d, "/bin/sh", "-c", "read line; stty size")
		s.Stdin, s.TTY, s.Window = true, true, oneoff.TermSize{Rows: 10, Cols: 20}
		id, err := created(d.Create(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		proc, err := d.Start(ctx, id, oneoff.StartOptions{Attach: true, TTY: true})
		if err != nil {
			t.Fatal(err)
		}
		st, exit := proc.Stream, proc.Exit
		defer st.Close()
		if err := d.Resize(ctx, id, oneoff.TermSize{Rows: 33, Cols: 101}); err != nil {
			t.Fatal(err)
		}
		var out testenv.Buffer
		done := make(chan error, 1)
		go func() { done <- st.CopyOutput(&out, &out) }()
		_, _ = st.Write([]byte("go\r"))
		<-exit
		<-done
		if !strings.Contains(out.String(), "33 101") {
			t.Errorf("output %q, want stty size 33 101", out.String())
		}
	})

	t.Run("stop ends a running container, list finds it by label", func(t *testing.T) {
		t.Parallel()
		s := spec(t, d, "sleep", "600")
		id, err := created(d.Create(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		proc, err := d.Start(ctx, id, oneoff.StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		exit := proc.Exit
		list, err := d.List(ctx, s.Labels)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != id || !list[0].Running || list[0].Labels[oneoff.LabelManaged] != "true" {
			t.Fatalf("list = %+v, want the one running container", list)
		}
		// A SIGTERM that comes before the init has started sleep finds no
		// child to pass it to: stop once sleep runs.
		waitSleeping(t, d, id)
		if err := d.Stop(ctx, id, time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-exit:
			// sleep under an init gets SIGTERM and dies of it.
			if e.Err != nil || e.Code != 143 {
				t.Errorf("exit = %+v, want 143", e)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no exit after stop")
		}
		if err := d.Stop(ctx, id, time.Second); err != nil {
			t.Errorf("stopping a stopped container: %v, want nil", err)
		}
	})
}

func TestDocker_Errors(t *testing.T) {
	t.Parallel()
	d := newDocker(t)
	ctx := context.Background()
	t.Run("image not on the engine", func(t *testing.T) {
		s := spec(t, d, "true")
		s.Image = "oneoffd-test/never-built:1"
		_, err := created(d.Create(ctx, s))
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if e, _ := errdefs.As(err); e.Code != "image_not_found" {
			t.Errorf("code = %q, want image_not_found", e.Code)
		}
	})
	t.Run("engine down", func(t *testing.T) {
		down, err := docker.New("unix:///nonexistent/docker.sock")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		for name, call := range map[string]func() error{
			"ping":   func() error { return down.Ping(ctx) },
			"create": func() error { _, err := down.Create(ctx, oneoff.Spec{Image: "x"}); return err },
			"list":   func() error { _, err := down.List(ctx, nil); return err },
		} {
			err := call()
			if !errors.Is(err, errdefs.ErrUnavailable) {
				t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
			}
		}
	})
}

// waitSleeping waits until the container's processes include sleep.
func waitSleeping(t *testing.T, d *docker.Runtime, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		top, err := d.Client().ContainerTop(context.Background(), id, nil)
		if err == nil {
			for _, p := range top.Processes {
				if strings.Contains(strings.Join(p, " "), "sleep") {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep not running in %s after 30s: %+v, %v", id, top, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// created returns the ID of what Create placed.
func created(p oneoff.Placement, err error) (string, error) { return p.ID, err }
