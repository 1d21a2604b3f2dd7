package e2e

import (
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// readLimits prints the container's own cgroup limits, v1 or v2.
const readLimits = `if [ -f /sys/fs/cgroup/memory.max ]; then
  echo mem=$(cat /sys/fs/cgroup/memory.max); set -- $(cat /sys/fs/cgroup/cpu.max); echo cpu=$1/$2; echo pids=$(cat /sys/fs/cgroup/pids.max)
else
  echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)/$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); echo pids=$(cat /sys/fs/cgroup/pids/pids.max)
fi`

func TestSizes(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--sizes", "tiny:16MiB:0.25:64,S:256MiB:0.5:256,M:512MiB:1:512", "--default-size", "M")
	app := d.deploy(nil, "")

	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "mem=536870912 cpu=100000/100000 pids=512"},
		{[]string{"--size", "S"}, "mem=268435456 cpu=50000/100000 pids=256"},
	} {
		t.Run("limits reach the container "+strings.Join(tt.args, " "), func(t *testing.T) {
			args := append(append([]string{"--app", app, "run"}, tt.args...), readLimits)
			out, err := d.cli(args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := strings.Join(strings.Fields(string(out)), " "); got != tt.want {
				t.Errorf("limits read in the container = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("an unknown size lists the valid ones", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--size", "XXL", "true").CombinedOutput()
		if exitCode(t, err) != 1 || !strings.Contains(string(out), `size "XXL" is unknown: use tiny (16 MiB, 0.25 CPU), S (256 MiB, 0.5 CPU), M (512 MiB, 1 CPU)`) {
			t.Errorf("got %v, %q", err, out)
		}
	})

	// dd's 64 MiB buffer cannot fit in 16 MiB: the kernel kills it.
	const hog = "dd if=/dev/zero of=/dev/null bs=64M count=1"
	t.Run("out of memory, attached", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--size", "tiny", hog).CombinedOutput()
		if code := exitCode(t, err); code != 137 {
			t.Errorf("exit code = %d, want 137 (SIGKILL)", code)
		}
		if !strings.Contains(string(out), "ran out of memory (size tiny allows 16 MiB)") {
			t.Errorf("output %q does not say it ran out of memory", out)
		}
	})
	t.Run("out of memory, detached", func(t *testing.T) {
		out, err := d.cli("--app", app, "run", "--detached", "--tail", "--size", "tiny", hog).CombinedOutput()
		if code := exitCode(t, err); code != 137 || !strings.Contains(string(out), "ran out of memory") {
			t.Errorf("got %d, %q; want 137 and a word about memory", code, out)
		}
		list, _ := d.client().OneOffs(t.Context(), client.Filter{App: app, Mode: apitypes.Detached})
		if len(list) != 1 || list[0].Outcome != apitypes.OutOfMemory || list[0].Size != "tiny" {
			t.Errorf("records %+v, want one out_of_memory of size tiny", list)
		}
	})
	d.waitNoContainers()
}
