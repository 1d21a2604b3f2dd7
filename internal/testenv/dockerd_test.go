package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestStartEngine(t *testing.T) {
	t.Parallel()
	e := StartEngine(t, EngineOptions{})
	cli := e.Client(t)
	ctx := context.Background()
	img := Image(t)
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sleep", "600"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatalf("create a container of the loaded image: %v", err)
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}

	e.Kill()
	t.Run("a killed engine does not answer", func(t *testing.T) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := cli.Ping(pctx); err == nil {
			t.Error("ping answered after Kill")
		}
	})
	t.Run("nothing of it runs", func(t *testing.T) {
		for _, d := range cgroupDirs(func(n string) bool { return n == e.Namespace }) {
			if pids := cgroupProcs(d); len(pids) > 0 {
				t.Errorf("processes %v left in %s", pids, d)
			}
		}
		if _, err := os.Stat(e.pidfile); !os.IsNotExist(err) {
			t.Errorf("pidfile still there: %v", err)
		}
	})

	e.Restart()
	t.Run("after a restart its container shows as exited", func(t *testing.T) {
		info, err := cli.ContainerInspect(ctx, resp.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Running {
			t.Errorf("state %+v, want exited", info.State)
		}
	})
	t.Run("the engine sits at its address", func(t *testing.T) {
		if e.IP == "" || e.Namespace == "" {
			t.Errorf("IP %q, namespace %q", e.IP, e.Namespace)
		}
	})
}

func TestNetwork_twoEngines(t *testing.T) {
	t.Parallel()
	n := NewNetwork(t)
	a := StartEngine(t, EngineOptions{Network: n, Node: 0, Images: []string{}})
	b := StartEngine(t, EngineOptions{Network: n, Node: 1, Images: []string{}, TLS: true})
	if a.IP == b.IP || a.Namespace == b.Namespace || a.Host == b.Host {
		t.Fatalf("two engines share an address, a namespace or a socket: %s %s %s", a.IP, a.Namespace, a.Host)
	}
	for _, e := range []*Engine{a, b} {
		// Nothing listens there: a refusal proves the way through the hub.
		_, err := net.DialTimeout("tcp", e.IP+":1", 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s from the root namespace: %v, want connection refused", e.IP, err)
		}
	}
	t.Run("an engine with TLS is reached over TCP with its client certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := b.TCPClient(t).Ping(ctx); err != nil {
			t.Errorf("ping %s: %v", b.TCPHost, err)
		}
	})
}

func TestNetwork_staleIsReclaimed(t *testing.T) {
	t.Parallel()
	needNetns(t)
	// A network left by a test binary that died: its hub namespace, and
	// an owner file naming a process that is gone.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	var x int
	for x = 254; x > 0; x-- {
		if !subnetInUse(fmt.Sprintf("%s%d.", netPrefix, x)) && ipCmd("netns", "add", fmt.Sprintf("ooe-%d-hub", x)) == nil {
			break
		}
	}
	dir := fmt.Sprintf("/tmp/ooe-%d", x)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/owner", []byte(strconv.Itoa(gone.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	n, ok := claimNetwork(t, x)
	if !ok {
		teardown(t, func(name string) bool { return strings.HasPrefix(name, fmt.Sprintf("ooe-%d-", x)) }, dir)
		t.Fatalf("network %d left by a dead process was not reclaimed", x)
	}
	n.teardown()
	if _, err := os.Stat("/run/netns/" + n.Hub); !os.IsNotExist(err) {
		t.Errorf("hub namespace still there after teardown: %v", err)
	}
}
