package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/testenv"
	"github.com/oneoffd/oneoffd/oneoff"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// screenshotEnv, set to 1, makes TestUI_Browser refresh docs/ui.png.
const screenshotEnv = "ONEOFFD_UPDATE_SCREENSHOT"

// browser starts a headless Chromium for the test, and returns the context
// its actions run in. Without Chromium the test is skipped on a laptop and
// fails in CI.
func browser(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		if testenv.InCI() {
			t.Fatalf("no Chromium at %s, and CI needs it: apt-get install chromium", chromiumPath)
		}
		t.Skipf("no Chromium at %s (apt-get install chromium)", chromiumPath)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return tab
}

func TestUI_Browser(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--stop-grace", "1s")
	app := d.deploy(nil, "")
	ctx := browser(t, 60*time.Second)

	// Two that ran, one that waits for its terminal, one that runs.
	job, err := d.client().WithRequester("dave@example.com").CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
		Command: apitypes.Command{Line: "echo report built"}, Detached: true, Size: "S"})
	if err != nil {
		t.Fatal(err)
	}
	d.waitFinished(job.ID)
	done := d.cli("--app", app, "run", "--no-tty", "--size", "L", "echo migrated; exit 3")
	done.Env = append(done.Env, "ONEOFF_REQUESTER=bob@example.com")
	if out, err := done.CombinedOutput(); done.ProcessState == nil || done.ProcessState.ExitCode() != 3 {
		t.Fatalf("oneoff run 'exit 3': %v: %s", err, out)
	}
	waiting, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
		Command: apitypes.Command{Line: "rake db:migrate"}, Requester: "carol@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.client().Stop(context.Background(), waiting.ID) })
	sh := d.cli("--app", app, "run", "sh")
	sh.Env = append(sh.Env, "ONEOFF_REQUESTER=alice@example.com")
	tm := startInPTY(t, sh, 24, 80)
	tm.expect(`# `)

	running := oneOffs(t, d, client.Filter{App: app, State: apitypes.Running})
	finished := oneOffs(t, d, client.Filter{App: app, State: apitypes.Finished})
	if len(running) != 1 || len(finished) != 2 {
		t.Fatalf("got %d running and %d finished one-offs, want 1 and 2", len(running), len(finished))
	}
	run, fin := running[0], finished[0] // newest first

	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Bearer " + d.token}})
	if err != nil {
		t.Fatalf("set the Authorization header: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(d.api+"/ui"), chromedp.WaitVisible(chromedp.CSS("#finished"))); err != nil {
		t.Fatalf("open %s/ui: %v", d.api, err)
	}

	t.Run("shows the one-offs", func(t *testing.T) {
		for _, tt := range []struct {
			o    apitypes.OneOff
			want []string
		}{
			{run, []string{run.Name, app, "alice@example.com", "running", "attached", "sh", "Stop"}},
			{fin, []string{fin.Name, app, "bob@example.com", "exited (3)", "L", "echo migrated; exit 3"}},
			{job.OneOff, []string{job.Name, "dave@example.com", "detached", "exited (0)", "echo report built"}},
			{waiting.OneOff, []string{waiting.Name, "carol@example.com", "pending", "rake db:migrate"}},
		} {
			text, err := chromedp.Run(ctx, chromedp.Text(rowOf(tt.o.ID)))
			if err != nil {
				t.Fatalf("read the row of %s: %v", tt.o.Name, err)
			}
			for _, want := range tt.want {
				if !strings.Contains(text, want) {
					t.Errorf("the row of %s lacks %q: %q", tt.o.Name, want, text)
				}
			}
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 1000 {
			t.Fatalf("the screenshot is not a PNG (%d bytes)", len(png))
		}
		if err := os.WriteFile(filepath.Join(t.TempDir(), "ui.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Getenv(screenshotEnv) == "1" {
			if err := os.WriteFile(filepath.Join("..", "docs", "ui.png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote docs/ui.png")
		}
	})

	t.Run("stop button", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(rowOf(run.ID)+" button.stop"))); err != nil {
			t.Fatalf("click Stop: %v", err)
		}
		// The page comes back by itself: from the redirect, or its refresh.
		finishedRow := `document.querySelector('#finished ` + rowOf(run.ID) + `')`
		deadline := time.Now().Add(20 * time.Second)
		for {
			state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(`+finishedRow+`?.dataset.state) || ""`))
			if err == nil && state == "stopped" {
				break
			}
			if errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
				html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
				t.Fatalf("the page does not show %s stopped (last: %q, %v):\n%s", run.Name, state, err, html)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code := tm.wait(); code == 0 {
			t.Errorf("CLI exit code = 0 after a stop from the page, want non-zero")
		}
		tm.expect(`stopped`)
		events, err := d.client().Audit(context.Background(), client.AuditFilter{OneOffID: run.ID})
		if err != nil {
			t.Fatal(err)
		}
		var actor string
		for _, e := range events {
			if e.Action == oneoff.AuditStop {
				actor = e.Actor
			}
		}
		if !strings.HasPrefix(actor, "ui") {
			t.Errorf("got stop actor %q in the audit trail, want the page's", actor)
		}
	})
}

// rowOf selects the table row of one-off id on the page.
func rowOf(id string) string { return `tr[id="oneoff-` + id + `"]` }

// oneOffs lists the daemon's one-offs that pass f.
func oneOffs(t *testing.T, d *daemon, f client.Filter) []apitypes.OneOff {
	t.Helper()
	list, err := d.client().OneOffs(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return list
}
