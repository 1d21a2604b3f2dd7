package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/logs"
)

// TestDrains_internalRefused is a daemon with the default rules: drains
// aimed inside are refused, naming the URL and why, through the API and the
// CLI.
func TestDrains_internalRefused(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	for _, u := range []string{"syslog+tcp://127.0.0.1:2375", "syslog://169.254.169.254:80", "syslog://[::1]:22", "syslog://10.0.0.1:514", "syslog://localhost:514"} {
		_, err := d.client().SetDrains(context.Background(), app, []string{u})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Code != "drain_address_internal" || !strings.Contains(ce.Message, u) {
			t.Errorf("set drain %s: %v, want 400 drain_address_internal naming it", u, err)
		}
	}
	code, out, stderr := cliOut(t, d, "--app", app, "drains", "add", "syslog://127.0.0.1:2375")
	if code != 1 || out != "" || !strings.Contains(stderr, `drain URL "syslog://127.0.0.1:2375" is refused: 127.0.0.1 is a loopback address`) {
		t.Errorf("drains add 127.0.0.1: exit %d, output %q, stderr %q", code, out, stderr)
	}
	if code, out, _ := cliOut(t, d, "--app", app, "drains"); code != 0 || out != app+" has no log drains\n" {
		t.Errorf("drains after refusals: exit %d, %q", code, out)
	}
}

// TestDrains_internalRefusedAtStart is a daemon-wide drain aimed inside:
// the daemon does not start, and says why.
func TestDrains_internalRefusedAtStart(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(filepath.Join(binDir, "oneoffd"), "--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-drains", "syslog://169.254.169.254:514")
	out, err := cmd.CombinedOutput()
	if exitCode(t, err) == 0 || !strings.Contains(string(out), "169.254.169.254 is a link-local address") || !strings.Contains(string(out), "--drain-allow") {
		t.Errorf("oneoffd with a link-local drain: %v, %s", err, out)
	}
}

// TestDrains_failingShown is a drain whose server is gone: its state, last
// error and since when show in the API and in "oneoff drains", daemon-wide
// too.
func TestDrains_failingShown(t *testing.T) {
	t.Parallel()
	d := startDrainDaemon(t)
	app := d.deploy(nil, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "syslog://" + ln.Addr().String()
	ln.Close()
	if code, _, stderr := cliOut(t, d, "--app", app, "drains", "add", gone); code != 0 {
		t.Fatalf("drains add: exit %d: %s", code, stderr)
	}
	runDetached(t, d, app, `echo "to a drain that is gone"`)

	deadline := time.Now().Add(30 * time.Second)
	for {
		drains, err := d.client().Drains(context.Background(), app)
		if err != nil {
			t.Fatal(err)
		}
		if len(drains.Status) == 1 && drains.Status[0].State == string(logs.DrainFailing) {
			if st := drains.Status[0]; !strings.Contains(st.LastError, "connection refused") || st.FailingSince == nil {
				t.Errorf("status %+v, want the refused connection and since when", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drain is not failing after 30s: %+v", drains)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, out, stderr := cliOut(t, d, "--app", app, "drains")
	if code != 0 || !strings.Contains(out, gone) || !strings.Contains(out, "failing since ") || !strings.Contains(out, "connection refused") {
		t.Errorf("drains: exit %d, output %q (stderr %q); want %s failing since a time with its last error", code, out, stderr, gone)
	}
	code, out, stderr = cliOut(t, d, "drains") // every drain, without --app
	if code != 0 || !strings.HasPrefix(out, "APP ") || !strings.Contains(out, app) || !strings.Contains(out, "failing since ") {
		t.Errorf("drains without --app: exit %d, output %q (stderr %q)", code, out, stderr)
	}
	d.waitNoContainers()
}
