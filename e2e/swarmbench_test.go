package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	dockerclient "github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// BenchmarkSwarmStartLatency measures, on a real swarm of three nodes, the
// time from asking for a one-off to its first byte of output on a worker,
// side by side with the two ways Docker itself offers, interleaved in the
// same run so that all see the same node and load:
//
//   - api: oneoffd's POST /v1/apps/{app}/oneoffs, the attach endpoint, the
//     first stdout frame (oneoffd placed on the worker by --placement);
//   - warm: the same, from a second oneoffd with --warm 1, whose attached
//     one-off takes a container started ahead (the one of the round before
//     is replaced while the other three run);
//   - docker: `docker -H <the worker> run --rm IMAGE echo ready`, mutual
//     TLS to the worker's engine, from exec to the first byte;
//   - service: `docker service create` of the same on the worker, through
//     the manager, to the first byte of the service's log.
//
// The worker already has the image, pulled from the swarm's registry by
// the first round. It reports ms/op of each and the ratios to docker.
func BenchmarkSwarmStartLatency(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	sw := testenv.StartSwarm(b, testenv.SwarmOptions{})
	worker := sw.Nodes[1]
	d := startDaemon(b, "--engine", "swarm", "--docker-host", sw.Manager().TCPHost, "--node-tls-dir", sw.TLS.Dir,
		"--placement", "node.hostname=="+worker.Name)
	app := d.deployImageOf(sw.Image)
	c := d.client()
	warm := startDaemon(b, "--engine", "swarm", "--docker-host", sw.Manager().TCPHost, "--node-tls-dir", sw.TLS.Dir,
		"--placement", "node.hostname=="+worker.Name, "--warm", "1")
	warmApp := warm.deployImageOf(sw.Image)
	wc := warm.client()
	ctx := context.Background()
	manager := sw.TLSClient(b, sw.Manager().IP)
	dockerRun := func() *exec.Cmd {
		cmd := exec.Command("docker", "run", "--rm", sw.Image, "echo", "ready")
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+worker.TCPHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+sw.TLS.Dir)
		return cmd
	}
	// The first round pulls the image onto the worker, and tells the warm
	// daemon which app, image and size to keep warm: not measured.
	timeAPI(b, ctx, c, app)
	timeAPI(b, ctx, wc, warmApp)
	timeFirstByte(b, dockerRun())
	timeService(b, ctx, manager, sw.Image, worker.Name)

	var apiTotal, warmTotal, dockerTotal, serviceTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		warmTotal += timeAPI(b, ctx, wc, warmApp)
		apiTotal += timeAPI(b, ctx, c, app)
		dockerTotal += timeFirstByte(b, dockerRun())
		serviceTotal += timeService(b, ctx, manager, sw.Image, worker.Name)
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	b.ReportMetric(ms(apiTotal), "api-ms/op")
	b.ReportMetric(ms(warmTotal), "warm-ms/op")
	b.ReportMetric(ms(dockerTotal), "docker-run-ms/op")
	b.ReportMetric(ms(serviceTotal), "service-create-ms/op")
	b.ReportMetric(float64(apiTotal)/float64(dockerTotal), "api/docker")
	b.ReportMetric(float64(warmTotal)/float64(dockerTotal), "warm/docker")
	b.ReportMetric(float64(serviceTotal)/float64(dockerTotal), "service/docker")
}

// timeService creates a one-replica service of image that echoes on node,
// and returns the time to the first byte of its log; it removes the service.
func timeService(b *testing.B, ctx context.Context, cli *dockerclient.Client, image, node string) time.Duration {
	b.Helper()
	replicas := uint64(1)
	spec := swarm.ServiceSpec{
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: image, Command: []string{"echo", "ready"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + node}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	start := time.Now()
	resp, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cli.ServiceRemove(context.Background(), resp.ID) }()
	rc, err := cli.ServiceLogs(ctx, resp.ID, container.LogsOptions{ShowStdout: true, Follow: true})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	// The log comes in the engine's frames: an 8-byte header, then the
	// line; the header's arrival is the first byte's.
	if _, err := bufio.NewReader(rc).ReadByte(); err != nil && err != io.EOF {
		b.Fatalf("service log: %v", err)
	}
	return time.Since(start)
}
