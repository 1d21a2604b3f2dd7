package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// BenchmarkUpload measures how fast a file gets into a one-off's
// container: a 50 MiB file sent with the request that creates the one-off,
// until the answer says it arrived (created container, file in place,
// hash checked). Side by side, in the same iterations, the baseline does
// the same with the docker CLI: `docker create` of the same image, then
// `docker cp` of the same file into it. Both report MiB/s.
func BenchmarkUpload(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	const size = 50 << 20
	d := startDaemon(b)
	app := d.deploy(nil, "")
	image := testenv.Image(b)
	file, _ := randomFile(b, b.TempDir(), "data.bin", size)
	c := d.client()
	ctx := context.Background()
	files := []client.File{{Name: "data.bin", Size: size, Open: func() (io.ReadCloser, error) { return os.Open(file) }}}

	var ours, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		o, err := c.CreateOneOffWithFiles(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}}, files, nil)
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		if _, err := c.Stop(ctx, o.ID); err != nil {
			b.Fatal(err)
		}

		start = time.Now()
		id, err := exec.Command("docker", "create", image, "true").Output()
		if err != nil {
			b.Fatal(err)
		}
		cid := strings.TrimSpace(string(id))
		if out, err := exec.Command("docker", "cp", file, cid+":/tmp/data.bin").CombinedOutput(); err != nil {
			b.Fatalf("docker cp: %v: %s", err, out)
		}
		theirs += time.Since(start)
		_ = exec.Command("docker", "rm", "-f", cid).Run()
	}
	b.StopTimer()
	mib := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/ours.Seconds(), "oneoffd-MiB/s")
	b.ReportMetric(mib/theirs.Seconds(), "docker-cp-MiB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
	d.waitNoContainers()
}
