package logs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// drainHostname is the HOSTNAME the test drains send.
const drainHostname = "oneoffd-test"

// testAllow lets the test drains reach the syslog servers the tests run on
// the loopback interface, which drains may not reach by default.
var testAllow = DrainAllow{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// runDrain makes a drain for cfg, with test defaults for its zero fields,
// runs it until the test ends, and returns it.
func runDrain(t *testing.T, cfg DrainConfig) *SyslogDrain {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = drainHostname
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Allow == nil {
		cfg.Allow = testAllow
	}
	d, err := NewSyslogDrain(cfg)
	if err != nil {
		t.Fatalf("NewSyslogDrain(%q): %v", cfg.URL, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d
}

// testLogger returns a logger that writes to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// drainLines returns n lines whose texts start with prefix, alternating
// between two apps, two sources and both streams, a microsecond apart.
func drainLines(prefix string, n int) []Line {
	base := time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.FixedZone("CET", 3600))
	lines := make([]Line, n)
	for i := range lines {
		lines[i] = Line{
			Time:   base.Add(time.Duration(i) * time.Microsecond),
			App:    []string{"web", "worker"}[i%2],
			Source: []string{"one-off-1", "one-off-22"}[i/2%2],
			Stream: []string{Stdout, Stderr}[i/4%2],
			Text:   fmt.Sprintf("%s %04d: héllo | wörld", prefix, i),
		}
	}
	return lines
}

// drainTexts returns the lines' texts.
func drainTexts(lines []Line) []string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = l.Text
	}
	return s
}

// wantSyslogRecord returns how rsyslogd should write l, sent from hostname.
func wantSyslogRecord(hostname string, l Line) testenv.SyslogRecord {
	severity := "info"
	if l.Stream == Stderr {
		severity = "err"
	}
	return testenv.SyslogRecord{
		Hostname: hostname, Facility: "user",
		App: l.App, ProcID: l.Source, MsgID: l.Stream, Severity: severity,
		Time: l.Time.UTC().Format(syslogTimeLayout), StructuredData: "-", Msg: l.Text,
	}
}

// checkSyslogRecords checks that recs are exactly lines sent from hostname, in
// order, every field right.
func checkSyslogRecords(t *testing.T, recs []testenv.SyslogRecord, hostname string, lines []Line) {
	t.Helper()
	if len(recs) != len(lines) {
		t.Errorf("got %d records, want %d", len(recs), len(lines))
	}
	for i := range min(len(recs), len(lines)) {
		got, want := recs[i], wantSyslogRecord(hostname, lines[i])
		// rsyslogd may write the offset its own way: compare instants.
		gotTime, err := time.Parse(time.RFC3339Nano, got.Time)
		if err == nil && gotTime.Equal(lines[i].Time) {
			got.Time = want.Time
		}
		if got != want {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// waitDrainStats waits until the drain's stats satisfy ok.
func waitDrainStats(t *testing.T, d *SyslogDrain, what string, ok func(DrainStats) bool) DrainStats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := d.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("drain stats never showed %s: %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSyslogDrain_Run(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRsyslog(t, false)
		d := runDrain(t, DrainConfig{URL: r.URL()})
		lines := drainLines("tcp", 1000)
		for chunk := range slices.Chunk(lines, 70) {
			d.Enqueue(chunk)
		}
		recs := r.WaitMsgs(drainTexts(lines))
		checkSyslogRecords(t, recs, drainHostname, lines)
		s := waitDrainStats(t, d, "1000 sent", func(s DrainStats) bool { return s.Sent == 1000 })
		if s.Dropped != 0 || s.Errors != 0 || !s.Connected || s.Buffered != 0 {
			t.Errorf("stats %+v, want 1000 sent, connected, no drops or errors", s)
		}
	})

	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRsyslog(t, true)
		if !strings.HasPrefix(r.URL(), "syslog+tls://") {
			t.Fatalf("URL %q is not syslog+tls", r.URL())
		}
		d := runDrain(t, DrainConfig{URL: r.URL(), TLS: &tls.Config{RootCAs: r.Roots()}})
		lines := drainLines("tls", 200)
		d.Enqueue(lines[:100])
		d.Enqueue(lines[100:])
		checkSyslogRecords(t, r.WaitMsgs(drainTexts(lines)), drainHostname, lines)
	})

	t.Run("tls with an untrusted certificate", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRsyslog(t, true)
		d := runDrain(t, DrainConfig{URL: r.URL()}) // system roots only
		d.Enqueue(drainLines("untrusted", 1))
		s := waitDrainStats(t, d, "an error", func(s DrainStats) bool { return s.Errors > 0 })
		if s.Sent != 0 || s.Buffered != 1 {
			t.Errorf("stats %+v, want nothing sent and the line kept", s)
		}
	})

	t.Run("server restart", func(t *testing.T) {
		t.Parallel()
		r := testenv.StartRsyslog(t, false)
		d := runDrain(t, DrainConfig{URL: r.URL()})
		before, down, after := drainLines("before", 100), drainLines("down", 100), drainLines("after", 100)

		d.Enqueue(before)
		r.WaitMsgs(drainTexts(before))
		r.Stop()
		d.Enqueue(down[:50])
		waitDrainStats(t, d, "an error", func(s DrainStats) bool { return s.Errors > 0 })
		d.Enqueue(down[50:])
		r.Start()
		d.Enqueue(after)

		all := slices.Concat(drainTexts(before), drainTexts(down), drainTexts(after))
		recs := r.WaitMsgs(all)
		if len(recs) < len(all) {
			t.Errorf("got %d records, want at least %d", len(recs), len(all))
		}
		s := d.Stats()
		if s.Errors == 0 || s.Dropped != 0 {
			t.Errorf("stats %+v, want errors and no drops", s)
		}
	})

	t.Run("overflow while the server is down", func(t *testing.T) {
		t.Parallel()
		r := testenv.NewRsyslog(t, false) // not started yet
		d := runDrain(t, DrainConfig{URL: r.URL(), BufferLines: 100})
		lines := drainLines("overflow", 250)
		for chunk := range slices.Chunk(lines, 30) {
			d.Enqueue(chunk)
		}
		s := d.Stats()
		if s.Dropped != 150 || s.Buffered != 100 {
			t.Errorf("stats %+v, want 150 dropped and 100 buffered", s)
		}
		waitDrainStats(t, d, "an error", func(s DrainStats) bool { return s.Errors > 0 })

		r.Start()
		newest := lines[150:]
		recs := r.WaitMsgs(drainTexts(newest))
		checkSyslogRecords(t, recs, drainHostname, newest)
	})
}

func TestDrains_Enqueue(t *testing.T) {
	globalServer := testenv.StartRsyslog(t, false)
	webServer := testenv.StartRsyslog(t, false)

	ds := NewDrains(testLogger(t), nil, testAllow)
	if err := ds.AddGlobal(globalServer.URL()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ds.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// Added while Run runs: starts too.
	if err := ds.SetApp("web", []string{webServer.URL()}); err != nil {
		t.Fatal(err)
	}

	lines := drainLines("routed", 100) // web and worker, alternating
	ds.Enqueue(lines[:37])
	ds.Enqueue(lines[37:])

	var web []Line
	for _, l := range lines {
		if l.App == "web" {
			web = append(web, l)
		}
	}
	hostname, _ := os.Hostname() // the default
	checkSyslogRecords(t, globalServer.WaitMsgs(drainTexts(lines)), hostname, lines)
	checkSyslogRecords(t, webServer.WaitMsgs(drainTexts(web)), hostname, web)

	gotKeys := slices.Sorted(maps.Keys(ds.Stats()))
	wantKeys := []string{"app:web:" + webServer.URL(), "global:" + globalServer.URL()}
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("Stats keys %q, want %q", gotKeys, wantKeys)
	}

	// The app's drain stops: its server gets no more lines.
	if err := ds.SetApp("web", nil); err != nil {
		t.Fatal(err)
	}
	more := drainLines("after removal", 10)
	ds.Enqueue(more)
	globalServer.WaitMsgs(drainTexts(more))
	if n := len(webServer.Records()); n != len(web) {
		t.Errorf("the removed drain's server got %d records, want %d", n, len(web))
	}
}

func TestDrains_SetApp(t *testing.T) {
	ds := NewDrains(nil, nil, nil)
	if err := ds.SetApp("web", []string{"syslog://a.example:514", "syslog+tls://b.example:6514"}); err != nil {
		t.Fatal(err)
	}
	keys := func() []string { return slices.Sorted(maps.Keys(ds.Stats())) }
	want := []string{"app:web:syslog+tls://b.example:6514", "app:web:syslog://a.example:514"}
	if got := keys(); !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}

	tests := []struct {
		name string
		app  string
		urls []string
		want []string // keys after
		err  bool
	}{
		{
			name: "one URL invalid changes nothing",
			app:  "web",
			urls: []string{"syslog://c.example:514", "http://d.example:80"},
			want: want,
			err:  true,
		},
		{
			name: "no app name",
			app:  "",
			urls: []string{"syslog://c.example:514"},
			want: want,
			err:  true,
		},
		{
			name: "replaced, duplicates once",
			app:  "web",
			urls: []string{"syslog://a.example:514", "syslog+tcp://c.example:601", "syslog://a.example:514"},
			want: []string{"app:web:syslog+tcp://c.example:601", "app:web:syslog://a.example:514"},
		},
		{
			name: "another app",
			app:  "worker",
			urls: []string{"syslog://a.example:514"},
			want: []string{"app:web:syslog+tcp://c.example:601", "app:web:syslog://a.example:514", "app:worker:syslog://a.example:514"},
		},
		{
			name: "removed",
			app:  "web",
			urls: nil,
			want: []string{"app:worker:syslog://a.example:514"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ds.SetApp(tt.app, tt.urls)
			if gotErr := err != nil; gotErr != tt.err {
				t.Errorf("SetApp(%q, %q) = %v, want error %v", tt.app, tt.urls, err, tt.err)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if got := keys(); !slices.Equal(got, tt.want) {
				t.Errorf("keys %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDrains_AddGlobal(t *testing.T) {
	ds := NewDrains(nil, nil, nil)
	for _, u := range []string{"syslog://a.example:514", "syslog://a.example:514"} {
		if err := ds.AddGlobal(u); err != nil {
			t.Fatal(err)
		}
	}
	err := ds.AddGlobal("syslog://a.example")
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("AddGlobal without a port = %v, want ErrInvalid", err)
	}
	got, want := slices.Sorted(maps.Keys(ds.Stats())), []string{"global:syslog://a.example:514"}
	if !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
}
