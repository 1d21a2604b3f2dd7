package e2e

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// BenchmarkStartLatency measures the time from asking for a one-off to its
// first byte of output, side by side with plain `docker run --rm` of the
// same image and command, interleaved in the same run so that both see the
// same engine and load:
//
//   - api: POST /v1/apps/{app}/oneoffs, dial the attach endpoint, first byte
//   - cli: the oneoff CLI process, from exec to first byte on its stdout
//   - docker: the docker CLI process, `docker run --rm IMAGE echo ready`
//
// It reports each as ms/op and the ratios to docker; ns/op is one round of
// all three.
func BenchmarkStartLatency(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	d := startDaemon(b)
	app := d.deploy(nil, "")
	image := testenv.Image(b)
	c := d.client()
	ctx := context.Background()

	var apiTotal, cliTotal, dockerTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apiTotal += timeAPI(b, ctx, c, app)
		cliTotal += timeFirstByte(b, d.cli("--app", app, "run", "echo", "ready"))
		dockerTotal += timeFirstByte(b, exec.Command("docker", "run", "--rm", image, "echo", "ready"))
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	b.ReportMetric(ms(apiTotal), "api-ms/op")
	b.ReportMetric(ms(cliTotal), "cli-ms/op")
	b.ReportMetric(ms(dockerTotal), "docker-run-ms/op")
	b.ReportMetric(float64(apiTotal)/float64(dockerTotal), "api/docker")
	b.ReportMetric(float64(cliTotal)/float64(dockerTotal), "cli/docker")
	d.waitNoContainers()
}

func timeAPI(b *testing.B, ctx context.Context, c *client.Client, app string) time.Duration {
	tty := false
	start := time.Now()
	o, err := c.CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Args: []string{"echo", "ready"}}, TTY: &tty})
	if err != nil {
		b.Fatal(err)
	}
	att, err := client.Dial(ctx, o.AttachURL, o.AttachSecret, client.AttachOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer att.Close()
	_ = att.CloseStdin()
	first := &firstByte{}
	st, err := att.Copy(first, io.Discard, io.Discard)
	if err != nil || st.Outcome != string(apitypes.Exited) {
		b.Fatalf("run: %v %+v", err, st)
	}
	return first.at.Sub(start)
}

// timeFirstByte runs cmd and returns the time to its first byte on stdout;
// it waits for the command to end before returning.
func timeFirstByte(b *testing.B, cmd *exec.Cmd) time.Duration {
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(out)
	if _, err := r.ReadByte(); err != nil {
		b.Fatalf("%s: no output: %v", strings.Join(cmd.Args, " "), err)
	}
	elapsed := time.Since(start)
	_, _ = io.Copy(io.Discard, r)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return elapsed
}

type firstByte struct{ at time.Time }

func (f *firstByte) Write(p []byte) (int, error) {
	if f.at.IsZero() && len(p) > 0 {
		f.at = time.Now()
	}
	return len(p), nil
}
