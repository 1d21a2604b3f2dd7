package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// TestSwarm starts a swarm and drives it as oneoffd would: a one-replica
// service placed on a worker, which pulls the image from the swarm's
// registry; its container reached through the worker's TLS listener with
// the swarm's client certificate; the worker killed, seen down, restarted
// and seen ready; and nothing left once the service is removed.
func TestSwarm(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	s := StartSwarm(t, SwarmOptions{})
	t.Logf("swarm of %d nodes ready in %v", len(s.Nodes), time.Since(begin).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mgr := s.Manager().Client(t)

	t.Run("every node is ready, one manager and the others workers", func(t *testing.T) {
		nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(nodes), 3; got != want {
			t.Fatalf("%d nodes, want %d", got, want)
		}
		byID := map[string]swarm.Node{}
		for _, n := range nodes {
			byID[n.ID] = n
		}
		for _, n := range s.Nodes {
			got, ok := byID[n.ID]
			if !ok {
				t.Errorf("node %s (%s) not in the swarm's list", n.Namespace, n.ID)
				continue
			}
			if got.Status.State != swarm.NodeStateReady {
				t.Errorf("node %s: state %q, want ready", n.Namespace, got.Status.State)
			}
			wantRole := swarm.NodeRoleWorker
			if n.Manager {
				wantRole = swarm.NodeRoleManager
			}
			if got.Spec.Role != wantRole {
				t.Errorf("node %s: role %q, want %q", n.Namespace, got.Spec.Role, wantRole)
			}
			if got.Description.Hostname != n.Hostname || n.Name != n.Hostname {
				t.Errorf("node %s: hostname %q, Name %q, want %q", n.Namespace, got.Description.Hostname, n.Name, n.Hostname)
			}
			if got.Status.Addr != n.IP {
				t.Errorf("node %s: address %q, want %q", n.Namespace, got.Status.Addr, n.IP)
			}
		}
	})

	t.Run("the client files are where Docker's tools look for them", func(t *testing.T) {
		for _, f := range []string{s.TLS.CACert, s.TLS.Cert, s.TLS.Key} {
			if got := filepath.Dir(f); got != s.TLS.Dir {
				t.Errorf("%s is not in %s", f, s.TLS.Dir)
			}
		}
		if !slices.Contains(s.Env(), "DOCKER_CERT_PATH="+s.TLS.Dir) {
			t.Errorf("Env() = %v, want DOCKER_CERT_PATH=%s", s.Env(), s.TLS.Dir)
		}
	})

	t.Run("a client without the swarm's client certificate is refused", func(t *testing.T) {
		other, _, err := makeEngineTLS(t.TempDir(), s.Nodes[1].IP)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range s.Nodes {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := s.TLSClient(t, n.IP).Ping(pctx); err != nil {
				t.Errorf("ping %s with the swarm's client certificate: %v", n.TCPHost, err)
			}
			_, err := tlsClient(t, n.TCPHost, EngineTLS{CACert: s.TLS.CACert}).Ping(pctx)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Errorf("ping %s without a client certificate: %v, want a TLS refusal", n.TCPHost, err)
			}
			// Sent even though the node asks for another CA's, which a
			// client left to itself would not do.
			_, err = pingWithCert(pctx, t, n.IP, s.TLS.CACert, other)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Errorf("ping %s with a certificate of another CA: %v, want a TLS refusal", n.TCPHost, err)
			}
		}
	})

	worker := 2
	w := s.Nodes[worker]
	if _, err := w.Client(t).ImageInspect(ctx, s.Image); !cerrdefs.IsNotFound(err) {
		t.Fatalf("image %s on worker %s before any service: %v, want none", s.Image, w.Namespace, err)
	}
	replicas := uint64(1)
	created := time.Now()
	svc, err := mgr.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "ooe-test"},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: s.Image, Command: []string{"sleep", "600"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.id==" + w.ID}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("create a service: %v", err)
	}
	task := waitTask(ctx, t, mgr, svc.ID)
	if task.Status.State != swarm.TaskStateRunning {
		t.Fatalf("task %s: %s, want running", task.Status.State, task.Status.Err)
	}
	t.Logf("service created to its task running on worker %s, image pulled from the registry: %v",
		w.Namespace, time.Since(created).Round(time.Millisecond))

	t.Run("the task runs on the worker, seen through its TLS listener", func(t *testing.T) {
		if task.NodeID != w.ID {
			t.Fatalf("task on node %s, want %s (%s)", task.NodeID, w.ID, w.Namespace)
		}
		node, _, err := mgr.NodeInspectWithRaw(ctx, task.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		cli := s.TLSClient(t, node.Status.Addr)
		info, err := cli.ContainerInspect(ctx, task.Status.ContainerStatus.ContainerID)
		if err != nil {
			t.Fatalf("inspect the task's container on %s: %v", node.Status.Addr, err)
		}
		if !info.State.Running {
			t.Errorf("container state %+v, want running", info.State)
		}
		if _, err := cli.ImageInspect(ctx, s.Image); err != nil {
			t.Errorf("image %s on the worker: %v, want pulled", s.Image, err)
		}

		exec, err := cli.ContainerExecCreate(ctx, info.ID, container.ExecOptions{
			Cmd: []string{"echo", "hi"}, AttachStdout: true, AttachStderr: true,
		})
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		hr, err := cli.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
		if err != nil {
			t.Fatalf("exec attach: %v", err)
		}
		defer hr.Close()
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, hr.Reader); err != nil {
			t.Fatalf("read the exec's output: %v", err)
		}
		if got, want := stdout.String(), "hi\n"; got != want {
			t.Errorf("exec output %q (stderr %q), want %q", got, stderr.String(), want)
		}
	})

	s.KillNode(worker)
	down, err := s.WaitNodeState(worker, swarm.NodeStateDown, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worker %s killed, down for the manager after %v", w.Namespace, down.Round(time.Millisecond))
	restarted := time.Now()
	s.RestartNode(worker)
	if _, err := s.WaitNodeState(worker, swarm.NodeStateReady, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("worker %s restarted and ready again after %v", w.Namespace, time.Since(restarted).Round(time.Millisecond))

	if err := mgr.ServiceRemove(ctx, svc.ID); err != nil {
		t.Fatalf("remove the service: %v", err)
	}
	t.Run("nothing is left on any node once the service is removed", func(t *testing.T) {
		for _, n := range s.Nodes {
			cli := n.TCPClient(t)
			var left []container.Summary
			for deadline := time.Now().Add(30 * time.Second); ; {
				left, err = cli.ContainerList(ctx, container.ListOptions{All: true})
				if err == nil && len(left) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || len(left) > 0 {
				t.Errorf("node %s: containers %v (%v), want none", n.Namespace, left, err)
			}
		}
		tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{})
		if err != nil || len(tasks) > 0 {
			t.Errorf("tasks %v (%v), want none", tasks, err)
		}
	})
	t.Logf("whole test: %v", time.Since(begin).Round(time.Millisecond))
}

// TestSwarm_registryAuth checks that a swarm's registry with auth makes its
// nodes pull with the credentials a service passes on, and only with them.
func TestSwarm_registryAuth(t *testing.T) {
	t.Parallel()
	s := StartSwarm(t, SwarmOptions{Nodes: 2, RegistryAuth: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mgr := s.Manager().Client(t)
	auth, err := registry.EncodeAuthConfig(s.Registry.AuthConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth string
		want       swarm.TaskState
	}{
		{"without credentials the worker cannot pull", "", swarm.TaskStateRejected},
		{"with the registry's credentials it pulls", auth, swarm.TaskStateRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replicas := uint64(1)
			svc, err := mgr.ServiceCreate(ctx, swarm.ServiceSpec{
				TaskTemplate: swarm.TaskSpec{
					ContainerSpec: &swarm.ContainerSpec{Image: s.Image, Command: []string{"sleep", "600"}},
					RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
					Placement:     &swarm.Placement{Constraints: []string{"node.id==" + s.Nodes[1].ID}},
				},
				Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
			}, swarm.ServiceCreateOptions{EncodedRegistryAuth: tc.auth})
			if err != nil {
				t.Fatalf("create a service: %v", err)
			}
			defer mgr.ServiceRemove(ctx, svc.ID)
			task := waitTask(ctx, t, mgr, svc.ID)
			if got := task.Status.State; got != tc.want {
				t.Errorf("task %s (%s), want %s", got, task.Status.Err, tc.want)
			}
		})
	}
}

// pingWithCert pings the engine at ip's TLS listener with the client
// certificate of creds, whatever CAs the engine asks for.
func pingWithCert(ctx context.Context, t *testing.T, ip, caFile string, creds EngineTLS) (int, error) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(creds.Cert, creds.Key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:              roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(ip, tlsPort)+"/_ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitTask waits until the service's task runs, or has ended without, and
// returns it.
func waitTask(ctx context.Context, t *testing.T, cli *client.Client, serviceID string) swarm.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last []swarm.Task
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
		if err == nil {
			last = tasks
			for _, task := range tasks {
				switch task.Status.State {
				case swarm.TaskStateRunning, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateComplete:
					return task
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no task of service %s running: %v, last seen %+v", serviceID, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
