package oneoff_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// startDetached creates a detached one-off and returns it with its
// container's id.
func (h *harness) startDetached(t *testing.T, ttl time.Duration) (oneoff.OneOff, string) {
	t.Helper()
	rec, secret := h.create(t, oneoff.Request{Command: oneoff.Command{Line: "job"}, Detached: true, TTL: ttl})
	if secret != "" || rec.SecretHash != nil || rec.AttachDeadline != nil {
		t.Errorf("a detached one-off got attach material: secret %q, deadline %v", secret, rec.AttachDeadline)
	}
	if rec.State != oneoff.Running || rec.StartedAt == nil || rec.ExpiresAt == nil {
		t.Fatalf("after Create: state %s, started %v, expires %v; want running with both times", rec.State, rec.StartedAt, rec.ExpiresAt)
	}
	return rec, rec.ContainerID
}

// engineTime is when the fake engine's lines begin: after the daemon's
// clock, as a container's output comes after the daemon starts it.
func engineTime() time.Time { return time.Now().UTC().Add(time.Hour).Truncate(time.Second) }

func entry(at time.Time, stream, data string) oneoff.LogEntry {
	return oneoff.LogEntry{Time: at, Stream: stream, Data: []byte(data)}
}

// texts returns the stored lines of source that its container wrote, as
// "stream:text": the daemon's lines of its start and end left out.
func (h *harness) texts(source string) []string {
	var out []string
	for _, l := range h.logs.Lines() {
		if l.Source == source && !lifecycleLine(l) {
			out = append(out, l.Stream+":"+l.Text)
		}
	}
	return out
}

// lifecycle returns the daemon's lines about source's start and end.
func (h *harness) lifecycle(source string) []string {
	var out []string
	for _, l := range h.logs.Lines() {
		if l.Source == source && lifecycleLine(l) {
			out = append(out, l.Text)
		}
	}
	return out
}

func lifecycleLine(l oneoff.LogLine) bool {
	return l.Stream == "stderr" && (strings.HasPrefix(l.Text, "Starting process with command ") || strings.HasPrefix(l.Text, "Process "))
}

func TestManager_detached(t *testing.T) {
	ctx := context.Background()
	t0 := engineTime()

	t.Run("starts at once; output in the log; exit recorded; removed after", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		spec := h.rt.Spec(t, cid)
		if spec.Stdin || spec.TTY || !spec.Logs || spec.Labels[oneoff.LabelMode] != "detached" {
			t.Errorf("spec stdin %v tty %v logs %v mode %q; want no stdin, no TTY, logs kept, detached",
				spec.Stdin, spec.TTY, spec.Logs, spec.Labels[oneoff.LabelMode])
		}
		if got, want := rec.ExpiresAt.Sub(*rec.StartedAt), oneoff.DefaultMaxLifetime; got != want {
			t.Errorf("lifetime = %s, want the default %s", got, want)
		}
		h.rt.Log(t, cid, entry(t0, "stdout", "one\n"))
		h.rt.Log(t, cid, entry(t0.Add(1), "stderr", "warn\n"))
		h.rt.Log(t, cid, entry(t0.Add(2), "stdout", "a long line, "))
		h.rt.Log(t, cid, entry(t0.Add(3), "stdout", "in two parts\n"))
		h.rt.Log(t, cid, entry(t0.Add(4), "stdout", "last, without newline"))
		h.rt.Exit(t, cid, 3, false)
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Exited || f.ExitCode == nil || *f.ExitCode != 3 {
			t.Errorf("finished %s/%v, want exited/3", f.Outcome, f.ExitCode)
		}
		want := []string{"stdout:one", "stderr:warn", "stdout:a long line, in two parts", "stdout:last, without newline"}
		if got := h.texts(rec.Name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("lines = %q, want %q", got, want)
		}
		if !h.rt.Removed(cid) {
			t.Error("container not removed")
		}
	})

	t.Run("a stop is graceful and recorded", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		got, err := h.m.Stop(ctx, rec.ID, "tester")
		if err != nil || got.Outcome != oneoff.Stopped || got.ExitCode == nil || *got.ExitCode != 143 {
			t.Errorf("Stop = %s/%v, %v; want stopped with 143 (SIGTERM)", got.Outcome, got.ExitCode, err)
		}
		calls := strings.Join(h.rt.Calls(), ",")
		if !strings.Contains(calls, "stop "+cid) || strings.Index(calls, "stop "+cid) > strings.Index(calls, "remove "+cid) {
			t.Errorf("calls %s: want a stop before the remove", calls)
		}
	})

	t.Run("lifetime", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{MaxLifetime: time.Hour})
		rec, _ := h.startDetached(t, 20*time.Millisecond)
		if f := h.waitStored(t, rec.ID, oneoff.Finished); f.Outcome != oneoff.LifetimeExceeded {
			t.Errorf("outcome = %s, want %s", f.Outcome, oneoff.LifetimeExceeded)
		}
		for _, tt := range []struct {
			ttl  time.Duration
			code string
		}{{2 * time.Hour, "ttl_too_long"}, {-time.Second, "invalid_ttl"}} {
			_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"}, Detached: true, TTL: tt.ttl})
			wantClass(t, err, errdefs.ErrInvalid, tt.code)
		}
		_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"}, TTL: time.Minute})
		wantClass(t, err, errdefs.ErrInvalid, "ttl_detached_only")
	})

	t.Run("out of memory is said so", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		h.rt.OOM(t, cid)
		h.rt.Exit(t, cid, 137, false)
		if f := h.waitStored(t, rec.ID, oneoff.Finished); f.Outcome != oneoff.OutOfMemory || *f.ExitCode != 137 {
			t.Errorf("finished %s/%v, want %s/137", f.Outcome, f.ExitCode, oneoff.OutOfMemory)
		}
	})

	t.Run("a restarted daemon adopts it and resumes its log exactly", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		// Three lines at the same instant, then one later: the cursor must
		// count the run of equal times.
		h.rt.Log(t, cid, entry(t0, "stdout", "a\n"))
		h.rt.Log(t, cid, entry(t0, "stdout", "b\n"))
		h.rt.Log(t, cid, entry(t0.Add(time.Millisecond), "stdout", "c\n"))
		h.rt.Log(t, cid, entry(t0.Add(time.Millisecond), "stdout", "d\n"))
		waitLines(t, h, rec.Name, 4)
		if err := h.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// While no daemon runs, the job goes on.
		h.rt.Log(t, cid, entry(t0.Add(time.Millisecond), "stdout", "e\n"))
		h.rt.Log(t, cid, entry(t0.Add(2*time.Millisecond), "stdout", "partial "))
		m2 := h.manager(h.cfg)
		if err := m2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m2.Close(ctx) })
		h.rt.Log(t, cid, entry(t0.Add(3*time.Millisecond), "stdout", "line\n"))
		h.rt.Exit(t, cid, 0, false)
		if f := h.waitStored(t, rec.ID, oneoff.Finished); f.Outcome != oneoff.Exited {
			t.Errorf("outcome = %s, want exited", f.Outcome)
		}
		want := "stdout:a|stdout:b|stdout:c|stdout:d|stdout:e|stdout:partial line"
		if got := strings.Join(h.texts(rec.Name), "|"); got != want {
			t.Errorf("lines = %s, want %s", got, want)
		}
	})

	t.Run("a job that ended while no daemon ran is recorded", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		if err := h.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		h.rt.Log(t, cid, entry(t0, "stdout", "done\n"))
		h.rt.Exit(t, cid, 5, false)
		m2 := h.manager(h.cfg)
		if err := m2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m2.Close(ctx) })
		f := h.waitStored(t, rec.ID, oneoff.Finished)
		if f.Outcome != oneoff.Exited || *f.ExitCode != 5 {
			t.Errorf("finished %s/%v, want exited/5", f.Outcome, f.ExitCode)
		}
		if got := h.texts(rec.Name); len(got) != 1 || got[0] != "stdout:done" {
			t.Errorf("lines = %q", got)
		}
	})

	t.Run("start fails", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.StartErr = errors.New("no such command")
		_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"}, Detached: true})
		if err == nil || !strings.Contains(err.Error(), "no such command") {
			t.Fatalf("Create: %v, want the engine's error", err)
		}
		list, _ := h.db.OneOffs(ctx, oneoff.Filter{App: testApp})
		if len(list) != 1 || list[0].Outcome != oneoff.Failed || !h.rt.Removed(list[0].ContainerID) {
			t.Errorf("records %+v: want one failed, its container removed", list)
		}
	})
}

func waitLines(t *testing.T, h *harness, source string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for len(h.texts(source)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines of %s stored, want %d", len(h.texts(source)), source, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestManager_detachedCatchUp covers engines whose log follow ends at the
// container's exit before the last lines: what the follow missed is read
// again, from the log's tail when it reaches back far enough, else from
// the cursor.
func TestManager_detachedCatchUp(t *testing.T) {
	t0 := engineTime()
	for _, missed := range []int{1, 10, 5000} {
		t.Run(fmt.Sprintf("%d lines missed", missed), func(t *testing.T) {
			h := newHarness(t, oneoff.Config{})
			h.rt.FollowCutShort = true
			rec, cid := h.startDetached(t, 0)
			h.rt.Log(t, cid, entry(t0, "stdout", "0\n"))
			waitLines(t, h, rec.Name, 1)
			var last []oneoff.LogEntry
			for i := 1; i <= missed; i++ {
				last = append(last, entry(t0.Add(time.Duration(i)), "stdout", fmt.Sprintf("%d\n", i)))
			}
			h.rt.LogAndExit(t, cid, last, 0)
			h.waitStored(t, rec.ID, oneoff.Finished)
			got := h.texts(rec.Name)
			if len(got) != missed+1 {
				t.Fatalf("%d lines stored, want %d", len(got), missed+1)
			}
			for i, l := range got {
				if want := fmt.Sprintf("stdout:%d", i); l != want {
					t.Fatalf("line %d = %q, want %q", i, l, want)
				}
			}
		})
	}
}

// TestManager_detachedStreamsOutOfOrder covers the two streams' lines
// reaching the log out of time order: each line is stored once, after a
// follow cut short and after a restart alike.
func TestManager_detachedStreamsOutOfOrder(t *testing.T) {
	ctx := context.Background()
	t0 := engineTime()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	want := "stdout:a|stdout:b|stderr:x|stderr:z|stdout:c|stderr:y"

	t.Run("follow cut short", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		h.rt.FollowCutShort = true
		rec, cid := h.startDetached(t, 0)
		h.rt.Log(t, cid, entry(at(1), "stdout", "a\n"))
		h.rt.Log(t, cid, entry(at(4), "stdout", "b\n"))
		h.rt.Log(t, cid, entry(at(3), "stderr", "x\n"))
		waitLines(t, h, rec.Name, 3)
		h.rt.LogAndExit(t, cid, []oneoff.LogEntry{
			entry(at(3).Add(1), "stderr", "z\n"), entry(at(5), "stdout", "c\n"), entry(at(6), "stderr", "y\n"),
		}, 0)
		h.waitStored(t, rec.ID, oneoff.Finished)
		if got := strings.Join(h.texts(rec.Name), "|"); got != want {
			t.Errorf("lines = %s, want %s", got, want)
		}
	})
	t.Run("restart", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		rec, cid := h.startDetached(t, 0)
		h.rt.Log(t, cid, entry(at(1), "stdout", "a\n"))
		h.rt.Log(t, cid, entry(at(4), "stdout", "b\n"))
		h.rt.Log(t, cid, entry(at(3), "stderr", "x\n"))
		waitLines(t, h, rec.Name, 3)
		if err := h.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Written while no daemon runs: z comes before the stdout cursor.
		h.rt.Log(t, cid, entry(at(3).Add(1), "stderr", "z\n"))
		m2 := h.manager(h.cfg)
		if err := m2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m2.Close(ctx) })
		h.rt.LogAndExit(t, cid, []oneoff.LogEntry{entry(at(5), "stdout", "c\n"), entry(at(6), "stderr", "y\n")}, 0)
		h.waitStored(t, rec.ID, oneoff.Finished)
		if got := strings.Join(h.texts(rec.Name), "|"); got != want {
			t.Errorf("lines = %s, want %s", got, want)
		}
	})
}
