package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// TestSecrets_stayInTheDaemon deploys a release with a password in its env
// and reads it back every way the API and the CLI offer: the names come
// back, the value never; the daemon's files are its user's alone.
func TestSecrets_stayInTheDaemon(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	const secret = "hunter2-e2e"
	app := d.deploy(map[string]string{"DATABASE_URL": "postgres://app:" + secret + "@db/app", "RAILS_ENV": "production"}, "")
	for _, route := range []string{"/v1/apps", "/v1/apps/" + app} {
		req, _ := http.NewRequest(http.MethodGet, d.api+route, nil)
		req.Header.Set("Authorization", "Bearer "+d.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		compact := strings.Join(strings.Fields(string(body)), "")
		if resp.StatusCode != 200 || strings.Contains(string(body), secret) || !strings.Contains(compact, `"env_names":["DATABASE_URL","RAILS_ENV"]`) {
			t.Errorf("GET %s: %d %s; want the env's names and no value", route, resp.StatusCode, body)
		}
	}
	out, err := d.cli("--app", app, "deploy", "--image", testenv.Image(t), "-e", "TOKEN="+secret).CombinedOutput()
	if err != nil || strings.Contains(string(out), secret) || !strings.Contains(string(out), "env: TOKEN\n") {
		t.Errorf("oneoff deploy: %v, %q; want the env's names and no value", err, out)
	}
	// The one-offs still get the values.
	if _, err := d.client().Deploy(context.Background(), app, apitypes.Deploy{Image: testenv.Image(t), Env: map[string]string{"TOKEN": secret}}); err != nil {
		t.Fatal(err)
	}
	out, err = d.cli("--app", app, "run", "--no-tty", "echo $TOKEN").CombinedOutput()
	if err != nil || !strings.Contains(string(out), secret) {
		t.Errorf("a one-off's env: %v, %q; want the value", err, out)
	}

	for file, want := range map[string]os.FileMode{"": 0o700, "oneoffd.db": 0o600, "oneoffd.db-wal": 0o600, "api-token": 0o600} {
		fi, err := os.Stat(filepath.Join(d.dataDir, file))
		if err != nil {
			t.Errorf("stat %s: %v", file, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s in the data dir: mode %v, want %v", file, got, want)
		}
	}
	d.waitNoContainers()
}

// TestSecrets_shortTokenRefused is a daemon given a token too short to
// guard the API: it does not start, and says why.
func TestSecrets_shortTokenRefused(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(filepath.Join(binDir, "oneoffd"), "--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--token", "letmein")
	out, err := cmd.CombinedOutput()
	if exitCode(t, err) == 0 || !strings.Contains(string(out), "--token (ONEOFFD_TOKEN) is 7 characters: an API token must have at least 32") {
		t.Errorf("oneoffd --token letmein: %v, %s", err, out)
	}
}
