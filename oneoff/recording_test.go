package oneoff_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/oneoff"
)

// castEvents reads a recording: its header and its events' codes and data.
func castEvents(t *testing.T, path string) (map[string]any, [][2]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var hdr map[string]any
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hdr) != nil {
		t.Fatalf("bad header %q", sc.Text())
	}
	var evs [][2]string
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("bad event %q", sc.Text())
		}
		evs = append(evs, [2]string{ev[1].(string), ev[2].(string)})
	}
	return hdr, evs
}

func TestSession_Recording(t *testing.T) {
	t.Run("output and input, UTF-8 kept whole", func(t *testing.T) {
		dir := t.TempDir()
		h := newHarness(t, oneoff.Config{RecordDir: dir})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{Rows: 30, Cols: 100})
		r.stream.Send(false, "h\xc3")
		r.stream.Send(false, "\xa9llo\r\n")
		r.conn.send(t, oneoff.Input{Kind: oneoff.InputData, Data: []byte("ls\r")})
		r.stream.ReadStdin(t, 3)
		h.rt.Exit(t, r.rec.ContainerID, 0, true)
		r.wait(t)
		hdr, evs := castEvents(t, filepath.Join(dir, r.rec.ID+".cast"))
		if hdr["version"] != float64(2) || hdr["width"] != float64(100) || hdr["height"] != float64(30) {
			t.Errorf("header %v, want asciicast v2, 100x30", hdr)
		}
		var out, in strings.Builder
		for _, e := range evs {
			switch e[0] {
			case "o":
				out.WriteString(e[1])
			case "i":
				in.WriteString(e[1])
			}
		}
		if out.String() != "héllo\r\n" || in.String() != "ls\r" {
			t.Errorf("recorded output %q and input %q, want %q and %q", out.String(), in.String(), "héllo\r\n", "ls\r")
		}
		if !h.m.HasRecording(r.rec.ID) {
			t.Error("HasRecording says no")
		}
		events, _ := h.m.Audit(context.Background(), oneoff.AuditFilter{OneOffID: r.rec.ID})
		found := false
		for _, e := range events {
			found = found || e.Action == oneoff.AuditRecord
		}
		if !found {
			t.Errorf("audit %+v has no record event", events)
		}
	})

	t.Run("capped, then pruned with the records", func(t *testing.T) {
		dir := t.TempDir()
		h := newHarness(t, oneoff.Config{RecordDir: dir, RecordingMaxSize: 300})
		r := h.run(t, oneoff.Request{}, oneoff.TermSize{})
		for range 20 {
			r.stream.Send(false, strings.Repeat("x", 50))
		}
		h.rt.Exit(t, r.rec.ContainerID, 0, true)
		r.wait(t)
		path := filepath.Join(dir, r.rec.ID+".cast")
		info, err := os.Stat(path)
		if err != nil || info.Size() > 400 {
			t.Fatalf("recording %v, %v: want one under its cap", info, err)
		}
		_, evs := castEvents(t, path)
		if last := evs[len(evs)-1]; last[0] != "m" {
			t.Errorf("last event %v, want the cut's marker", last)
		}
		old := time.Now().Add(-2 * oneoff.DefaultRecordRetention)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Prune(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("the recording past its retention is still there: %v", err)
		}
	})
}
