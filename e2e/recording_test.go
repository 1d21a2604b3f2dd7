package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/oneoff"
)

// TestRecording_ReplayMatches: with --record-sessions, a session's
// recording is asciicast v2, the audit trail says it exists, /ui links to
// it, and oneoff replay shows what the user saw.
func TestRecording_ReplayMatches(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--record-sessions")
	app := d.deploy(nil, "")
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	tm.send("printf 'h\\303\\251llo %s\\n' $((6*7)); ls /tmp\r")
	tm.expect(`héllo 42`)
	tm.send("exit 2\r")
	if code := tm.wait(); code != 2 {
		t.Fatalf("exit code %d, want 2; screen:\n%s", code, tm.screen())
	}
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app})
	if err != nil || len(list) != 1 {
		t.Fatalf("records %v, %v", list, err)
	}
	id := list[0].ID
	d.waitFinished(id)

	out, err := d.cli("replay", "--speed", "50", id).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("oneoff replay: %v: %s", err, stderr)
	}
	tm.mu.Lock()
	saw := string(tm.out)
	tm.mu.Unlock()
	if len(out) == 0 || !strings.Contains(saw, string(out)) || !strings.Contains(string(out), "héllo 42") {
		t.Errorf("replay shows %q; the user saw %q", out, saw)
	}
	// What the CLI printed of itself before the session is not in it.
	if strings.Contains(string(out), "Running") {
		t.Errorf("replay shows the CLI's own lines: %q", out)
	}

	req, _ := http.NewRequest(http.MethodGet, d.api+"/v1/oneoffs/"+id+"/recording", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var hdr map[string]any
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hdr) != nil || hdr["version"] != float64(2) || hdr["width"] != float64(80) {
		t.Errorf("recording header %q, want asciicast v2 of width 80", sc.Text())
	}
	codes := map[string]int{}
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("bad event %q", sc.Text())
		}
		codes[ev[1].(string)]++
	}
	if codes["o"] == 0 || codes["i"] == 0 {
		t.Errorf("events by code %v, want output and input", codes)
	}

	events, err := d.client().Audit(context.Background(), client.AuditFilter{OneOffID: id})
	if err != nil {
		t.Fatal(err)
	}
	recorded := false
	for _, e := range events {
		recorded = recorded || (e.Action == oneoff.AuditRecord && strings.Contains(e.Detail, "session recorded"))
	}
	if !recorded {
		t.Errorf("audit trail %+v has no recording event", events)
	}

	ui, _ := http.NewRequest(http.MethodGet, d.api+"/ui", nil)
	ui.SetBasicAuth("ops", d.token)
	uresp, err := http.DefaultClient.Do(ui)
	if err != nil {
		t.Fatal(err)
	}
	defer uresp.Body.Close()
	var page strings.Builder
	_, _ = bufio.NewReader(uresp.Body).WriteTo(&page)
	if !strings.Contains(page.String(), "/ui/oneoffs/"+id+"/recording") {
		t.Errorf("/ui (status %d) has no link to the recording:\n%s", uresp.StatusCode, page.String())
	}
}
