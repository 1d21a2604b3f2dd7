package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

// TestCrash_RecordsBehind kills the daemon and puts its records back as a
// daemon that died a step earlier would have left them (a started job
// still pending, an attached one-off without its container's id), then
// restarts it on the real engine: the job is adopted with all its output
// once and its exit recorded, the attached one-off finds its container
// through the container's labels, and nothing is left.
func TestCrash_RecordsBehind(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	ctx := context.Background()
	job := d.startDetached(app, `for i in 1 2 3; do echo "line $i"; sleep 1; done; exit 4`, "")
	tty := false
	attached, err := d.client().CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "echo survived"}, TTY: &tty})
	if err != nil {
		t.Fatal(err)
	}
	cid := attached.ContainerID

	d.kill()
	db, err := store.Open(filepath.Join(d.dataDir, "oneoffd.db"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := db.OneOff(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec.State, rec.Step = oneoff.Pending, oneoff.StepStart // started, not yet recorded so
	if err := db.UpdateOneOff(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec, err = db.OneOff(ctx, attached.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec.ContainerID, rec.Step = "", oneoff.StepCreate // created, not yet recorded so
	if err := db.UpdateOneOff(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	d.restart()

	t.Run("the started job is adopted, its output read once", func(t *testing.T) {
		f := d.waitFinished(job.ID)
		if f.Outcome != apitypes.Exited || f.ExitCode == nil || *f.ExitCode != 4 {
			t.Errorf("finished %s/%v, want exited/4", f.Outcome, f.ExitCode)
		}
		got := texts(d.oneOffLines(job.ID))
		want := []string{"stdout:line 1", "stdout:line 2", "stdout:line 3"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("lines %q, want %q", got, want)
		}
	})
	t.Run("the attached one-off finds its container by its labels", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			o, err := d.client().OneOff(ctx, attached.ID)
			if err != nil {
				t.Fatal(err)
			}
			if o.ContainerID == cid && o.State == apitypes.Pending {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("one-off %s, container %q, want pending with container %q", o.State, o.ContainerID, cid)
			}
			time.Sleep(50 * time.Millisecond)
		}
		attached.AttachURL = "tcp://" + d.attach + "/" + attached.ID // the port changed
		if got := runRaw(t, d, attached, "", ""); got != "survived\n" {
			t.Errorf("output = %q, want %q", got, "survived\n")
		}
		d.waitFinished(attached.ID)
	})
	d.waitNoContainers()
}
