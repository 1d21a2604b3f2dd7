package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// BenchmarkLogThroughput measures how fast a detached one-off's output
// gets into the app's log: from asking for the one-off to having all its
// lines stored and the one-off finished, for a job printing lines as fast
// as it can. Side by side, in the same iterations, the baseline is the
// engine's own path: `docker run -d` of the same image and command with the
// same log driver, then `docker logs -f` until it ends, counting the lines.
//
// It reports lines/s delivered for both, their ratio (above 1: oneoffd is
// faster), and the fraction of the printed lines `docker logs -f` delivered.
func BenchmarkLogThroughput(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	const n = 200000
	d := startDaemon(b, "--log-retention", "256MiB")
	app := d.deploy(nil, "")
	image := testenv.Image(b)
	c := d.client()
	ctx := context.Background()
	command := fmt.Sprintf("seq 1 %d", n)

	var ours, theirs time.Duration
	delivered := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		o := d.startDetached(app, command, "")
		for {
			rec, err := c.OneOff(ctx, o.ID)
			if err != nil {
				b.Fatal(err)
			}
			if rec.State == apitypes.Finished {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		ours += time.Since(start)
		if got := len(d.oneOffLines(o.ID)); got != n {
			b.Fatalf("%d lines stored, want %d", got, n)
		}

		start = time.Now()
		id, err := exec.Command("docker", "run", "-d", "--log-driver", "local", "--log-opt", "max-size=100m",
			image, "sh", "-c", command).Output()
		if err != nil {
			b.Fatal(err)
		}
		cid := strings.TrimSpace(string(id))
		logs := exec.Command("docker", "logs", "-f", cid)
		out, _ := logs.StdoutPipe()
		if err := logs.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		count := 0
		for sc.Scan() {
			count++
		}
		_ = logs.Wait()
		theirs += time.Since(start)
		delivered += count
		_ = exec.Command("docker", "rm", "-f", cid).Run()
	}
	b.StopTimer()
	// Rates count the lines each side delivered: all of them for oneoffd
	// (checked above), what docker logs -f printed before it ended for the
	// baseline, which on some engines ends early at the container's exit.
	lines := float64(n * b.N)
	b.ReportMetric(lines/ours.Seconds(), "oneoffd-lines/s")
	b.ReportMetric(float64(delivered)/theirs.Seconds(), "docker-logs-f-lines/s")
	b.ReportMetric((lines/ours.Seconds())/(float64(delivered)/theirs.Seconds()), "ratio")
	b.ReportMetric(float64(delivered)/lines, "docker-delivered-fraction")
	d.waitNoContainers()
}
