package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// base is the time of the test lines.
var base = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

// openStore opens a Store with opts in a temporary directory (unless opts
// names one) and closes it when the test ends.
func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testLine is line i of source in app: its text and time say i.
func testLine(app, source string, i int) Line {
	return Line{
		Time:   base.Add(time.Duration(i) * time.Millisecond),
		App:    app,
		Source: source,
		Stream: Stdout,
		Text:   fmt.Sprintf("line %d of %s", i, source),
	}
}

// testLines is lines from to to-1 of source in app.
func testLines(app, source string, from, to int) []Line {
	var lines []Line
	for i := from; i < to; i++ {
		lines = append(lines, testLine(app, source, i))
	}
	return lines
}

// mustAppend appends lines or fails the test.
func mustAppend(t *testing.T, s *Store, lines []Line) {
	t.Helper()
	if err := s.Append(context.Background(), lines); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// mustTail tails app's log or fails the test.
func mustTail(t *testing.T, s *Store, app string, q Query) []Line {
	t.Helper()
	lines, err := s.Tail(context.Background(), app, q)
	if err != nil {
		t.Fatalf("Tail(%q, %+v): %v", app, q, err)
	}
	return lines
}

// sameLines reports how got differs from want, or "" if it does not;
// times are compared with Equal.
func sameLines(got, want []Line) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d lines, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.App != w.App || g.Source != w.Source || g.Stream != w.Stream || g.Text != w.Text {
			return fmt.Sprintf("line %d: got %+v, want %+v", i, g, w)
		}
	}
	return ""
}

// segmentFiles returns the sizes of app's segment files, by name.
func segmentFiles(t *testing.T, dir, app string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, app))
	if err != nil {
		t.Fatalf("read app directory: %v", err)
	}
	files := make(map[string]int64)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatalf("stat %s: %v", e.Name(), err)
		}
		files[e.Name()] = fi.Size()
	}
	return files
}

// checkRecords fails the test unless every line of app's segment files is
// a whole record.
func checkRecords(t *testing.T, dir, app string) {
	t.Helper()
	for name := range segmentFiles(t, dir, app) {
		data, err := os.ReadFile(filepath.Join(dir, app, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s does not end with a newline", name)
		}
		for rec := range bytes.Lines(data) {
			if _, err := parseRecord(bytes.TrimSuffix(rec, []byte("\n")), app); err != nil {
				t.Errorf("%s: record %q: %v", name, rec, err)
			}
		}
	}
}

func TestStore_Append(t *testing.T) {
	ctx := context.Background()

	t.Run("round-trips every field", func(t *testing.T) {
		s := openStore(t, Options{})
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			paris = time.FixedZone("CEST", 2*60*60)
		}
		tests := []struct {
			name string
			line Line
		}{
			{"plain", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: "hello"}},
			{"spaces, tabs and equals", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: "  a\tb = c  key=value\t"}},
			{"unicode", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: "héllo wörld ✓ 日本語 🚀"}},
			{"empty", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: ""}},
			{"stderr", Line{Time: base, Source: "one-off-2", Stream: Stderr, Text: "boom"}},
			{"quotes, backslashes and JSON", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: `{"t":"x","src":"one-off-2","s":"e"} \"\\ \u00e9`}},
			{"control characters", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: "a\x00b\x01c\x1b[31mred\x1b[0m\r\n\x7f"}},
			{"invalid UTF-8", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: "bad \xff\xfe byte \xc3"}},
			{"odd source", Line{Time: base, Source: `we"ird\ src ✓`, Stream: Stdout, Text: "x"}},
			{"empty source", Line{Time: base, Source: "", Stream: Stdout, Text: "x"}},
			{"whole second", Line{Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Source: "one-off-1", Stream: Stdout, Text: "x"}},
			{"other zone", Line{Time: time.Date(2024, 5, 1, 14, 0, 0, 1, paris), Source: "one-off-1", Stream: Stdout, Text: "x"}},
			{"monotonic clock", Line{Time: time.Now(), Source: "one-off-1", Stream: Stdout, Text: "x"}},
			{"zero time", Line{Source: "one-off-1", Stream: Stdout, Text: "x"}},
			{"long", Line{Time: base, Source: "one-off-1", Stream: Stdout, Text: string(bytes.Repeat([]byte("0123456789"), 100_000))}},
		}
		var want []Line
		for _, tt := range tests {
			l := tt.line
			l.App = "app"
			want = append(want, l)
		}
		mustAppend(t, s, want)

		got := mustTail(t, s, "app", Query{Lines: len(want)})
		if len(got) != len(want) {
			t.Fatalf("Tail: got %d lines, want %d", len(got), len(want))
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if d := sameLines(got[i:i+1], want[i:i+1]); d != "" {
					t.Error(d)
				}
				if got, want := got[i].Time.Location(), time.UTC; got != want {
					t.Errorf("time location: got %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("rolls segments without splitting records", func(t *testing.T) {
		dir := t.TempDir()
		const segBytes = 1024
		s := openStore(t, Options{Dir: dir, SegmentBytes: segBytes})
		for i := 0; i < 500; i += 50 {
			mustAppend(t, s, testLines("app", "one-off-1", i, i+50))
		}
		files := segmentFiles(t, dir, "app")
		if len(files) < 10 {
			t.Errorf("segment files: got %d, want at least 10", len(files))
		}
		for name, size := range files {
			if size > segBytes {
				t.Errorf("%s: got %d bytes, want at most %d", name, size, segBytes)
			}
		}
		if _, ok := files["00000001.log"]; !ok {
			t.Errorf("no 00000001.log in %v", files)
		}
		checkRecords(t, dir, "app")
		if d := sameLines(mustTail(t, s, "app", Query{Lines: 1000}), testLines("app", "one-off-1", 0, 500)); d != "" {
			t.Error(d)
		}
	})

	t.Run("a record larger than a segment", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, Options{Dir: dir, SegmentBytes: 1024})
		big := testLine("app", "one-off-1", 1)
		big.Text = string(bytes.Repeat([]byte("x"), 5000))
		want := []Line{testLine("app", "one-off-1", 0), big, testLine("app", "one-off-1", 2)}
		mustAppend(t, s, want)
		checkRecords(t, dir, "app")
		if got, want := len(segmentFiles(t, dir, "app")), 3; got != want {
			t.Errorf("segment files: got %d, want %d", got, want)
		}
		if d := sameLines(mustTail(t, s, "app", Query{}), want); d != "" {
			t.Error(d)
		}
	})

	t.Run("several apps", func(t *testing.T) {
		s := openStore(t, Options{})
		var lines []Line
		for i := range 30 {
			lines = append(lines, testLine([]string{"web", "api", "worker"}[i%3], "one-off-1", i))
		}
		mustAppend(t, s, lines)
		for _, app := range []string{"api", "web", "worker"} {
			var want []Line
			for _, l := range lines {
				if l.App == app {
					want = append(want, l)
				}
			}
			if d := sameLines(mustTail(t, s, app, Query{}), want); d != "" {
				t.Errorf("%s: %s", app, d)
			}
		}
		if got, want := s.Apps(), []string{"api", "web", "worker"}; !slices.Equal(got, want) {
			t.Errorf("Apps: got %v, want %v", got, want)
		}
	})

	t.Run("invalid lines write nothing", func(t *testing.T) {
		s := openStore(t, Options{})
		good := testLine("app", "one-off-1", 0)
		tests := []struct {
			name string
			bad  func(*Line)
		}{
			{"app name", func(l *Line) { l.App = "../etc" }},
			{"empty app name", func(l *Line) { l.App = "" }},
			{"stream", func(l *Line) { l.Stream = "stdin" }},
			{"empty stream", func(l *Line) { l.Stream = "" }},
			{"source not UTF-8", func(l *Line) { l.Source = "one-off-\xff" }},
			{"time out of range", func(l *Line) { l.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bad := good
				tt.bad(&bad)
				err := s.Append(ctx, []Line{good, bad})
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Errorf("Append: got %v, want an ErrInvalid error", err)
				}
			})
		}
		if got := mustTail(t, s, "app", Query{}); len(got) != 0 {
			t.Errorf("Tail: got %d lines, want none", len(got))
		}
	})

	t.Run("no lines", func(t *testing.T) {
		s := openStore(t, Options{})
		if err := s.Append(ctx, nil); err != nil {
			t.Errorf("Append(nil): %v", err)
		}
		if got := s.Apps(); len(got) != 0 {
			t.Errorf("Apps: got %v, want none", got)
		}
	})

	t.Run("concurrently to two apps", func(t *testing.T) {
		s := openStore(t, Options{SegmentBytes: 4096})
		const batches, per = 50, 20
		var wg sync.WaitGroup
		for _, app := range []string{"one", "two"} {
			wg.Go(func() {
				for i := 0; i < batches*per; i += per {
					if err := s.Append(ctx, testLines(app, "one-off-1", i, i+per)); err != nil {
						t.Errorf("Append to %s: %v", app, err)
						return
					}
				}
			})
		}
		// Batches of both apps at once, too.
		wg.Go(func() {
			for i := range batches {
				lines := []Line{testLine("one", "mixed", i), testLine("two", "mixed", i)}
				if err := s.Append(ctx, lines); err != nil {
					t.Errorf("Append to both: %v", err)
					return
				}
			}
		})
		wg.Wait()
		for _, app := range []string{"one", "two"} {
			for _, src := range []string{"one-off-1", "mixed"} {
				n := batches * per
				if src == "mixed" {
					n = batches
				}
				got := mustTail(t, s, app, Query{Lines: 10_000, Source: src})
				if d := sameLines(got, testLines(app, src, 0, n)); d != "" {
					t.Errorf("%s, %s: %s", app, src, d)
				}
			}
		}
	})

	t.Run("keeps the log to its size", func(t *testing.T) {
		dir := t.TempDir()
		const maxBytes, segBytes = 16 << 10, 2 << 10
		s := openStore(t, Options{Dir: dir, MaxBytesPerApp: maxBytes, SegmentBytes: segBytes})
		total := func() int64 {
			var n int64
			for _, size := range segmentFiles(t, dir, "app") {
				n += size
			}
			return n
		}
		const lines = 2000
		for i := 0; i < lines; i += 10 {
			mustAppend(t, s, testLines("app", "one-off-1", i, i+10))
			if got := total(); got > maxBytes+segBytes {
				t.Fatalf("after %d lines: got %d bytes, want at most %d", i+10, got, maxBytes+segBytes)
			}
		}
		if got, want := total(), int64(maxBytes-2*segBytes); got < want {
			t.Errorf("kept %d bytes, want at least %d", got, want)
		}
		files := segmentFiles(t, dir, "app")
		if _, ok := files["00000001.log"]; ok {
			t.Errorf("the oldest segment is still there: %v", files)
		}
		got := mustTail(t, s, "app", Query{Lines: lines})
		if len(got) == 0 || len(got) == lines {
			t.Fatalf("Tail: got %d lines, want some but not all of %d", len(got), lines)
		}
		if d := sameLines(got, testLines("app", "one-off-1", lines-len(got), lines)); d != "" {
			t.Error(d)
		}

		t.Run("on Open with a smaller size", func(t *testing.T) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, Options{Dir: dir, MaxBytesPerApp: 4 << 10, SegmentBytes: segBytes})
			if got, want := total(), int64(4<<10); got > want {
				t.Errorf("got %d bytes, want at most %d", got, want)
			}
			got := mustTail(t, s, "app", Query{Lines: lines})
			if d := sameLines(got, testLines("app", "one-off-1", lines-len(got), lines)); d != "" {
				t.Error(d)
			}
		})
	})

	t.Run("after Close", func(t *testing.T) {
		s, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, testLines("app", "one-off-1", 0, 1))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		err = s.Append(ctx, testLines("app", "one-off-1", 1, 2))
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Append: got %v, want an ErrUnavailable error", err)
		}
		_, err = s.Tail(ctx, "app", Query{})
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Tail: got %v, want an ErrUnavailable error", err)
		}
	})
}

func TestStore_Tail(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, SegmentBytes: 1024})
	// 300 lines, the sources taking turns, appended in batches of 7.
	var all []Line
	for i := range 300 {
		all = append(all, testLine("app", fmt.Sprintf("one-off-%d", i%3), i))
	}
	for batch := range slices.Chunk(all, 7) {
		mustAppend(t, s, batch)
	}
	if n := len(segmentFiles(t, dir, "app")); n < 20 {
		t.Fatalf("segment files: got %d, want at least 20", n)
	}
	of := func(source string) []Line {
		var lines []Line
		for _, l := range all {
			if source == "" || l.Source == source {
				lines = append(lines, l)
			}
		}
		return lines
	}
	last := func(lines []Line, n int) []Line { return lines[max(0, len(lines)-n):] }

	tests := []struct {
		name string
		q    Query
		want []Line
	}{
		{"last 5", Query{Lines: 5}, last(all, 5)},
		{"default", Query{}, last(all, DefaultTailLines)},
		{"more than there are", Query{Lines: 1000}, all},
		{"none", Query{Lines: -1}, nil},
		{"one line", Query{Lines: 1}, last(all, 1)},
		{"source", Query{Lines: 30, Source: "one-off-2"}, last(of("one-off-2"), 30)},
		{"all of a source", Query{Lines: 1000, Source: "one-off-1"}, of("one-off-1")},
		{"a source that is a prefix", Query{Lines: 1000, Source: "one-off-"}, nil},
		{"unknown source", Query{Lines: 10, Source: "one-off-9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := sameLines(mustTail(t, s, "app", tt.q), tt.want); d != "" {
				t.Error(d)
			}
		})
	}

	t.Run("app without a log", func(t *testing.T) {
		if got := mustTail(t, s, "other", Query{}); len(got) != 0 {
			t.Errorf("got %d lines, want none", len(got))
		}
	})

	t.Run("at most MaxTailLines", func(t *testing.T) {
		s := openStore(t, Options{})
		const n = MaxTailLines + 50
		mustAppend(t, s, testLines("big", "one-off-1", 0, n))
		got := mustTail(t, s, "big", Query{Lines: 1 << 30})
		if d := sameLines(got, testLines("big", "one-off-1", n-MaxTailLines, n)); d != "" {
			t.Error(d)
		}
	})
}

func TestOpen(t *testing.T) {
	t.Run("needs a directory", func(t *testing.T) {
		if _, err := Open(Options{}); err == nil {
			t.Error("Open with no Dir: got no error")
		}
	})

	t.Run("data survives Close and Open", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(Options{Dir: dir, SegmentBytes: 1024})
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, testLines("app", "one-off-1", 0, 100))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, Options{Dir: dir, SegmentBytes: 1024})
		mustAppend(t, s, testLines("app", "one-off-1", 100, 200))
		if d := sameLines(mustTail(t, s, "app", Query{Lines: 1000}), testLines("app", "one-off-1", 0, 200)); d != "" {
			t.Error(d)
		}
		if got, want := s.Apps(), []string{"app"}; !slices.Equal(got, want) {
			t.Errorf("Apps: got %v, want %v", got, want)
		}
	})

	t.Run("ignores other files", func(t *testing.T) {
		dir := t.TempDir()
		for _, p := range []string{"NOTES", "Bad_App/00000001.log", "app/notes.txt", "app/x.log"} {
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p), []byte("not a log"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s := openStore(t, Options{Dir: dir})
		if got := s.Apps(); len(got) != 0 {
			t.Errorf("Apps: got %v, want none", got)
		}
		mustAppend(t, s, testLines("app", "one-off-1", 0, 3))
		if d := sameLines(mustTail(t, s, "app", Query{}), testLines("app", "one-off-1", 0, 3)); d != "" {
			t.Error(d)
		}
	})

	whole := testLine("app", "one-off-2", 1)
	tests := []struct {
		name    string
		garbage string
		kept    []Line // of the garbage
	}{
		{"half a record", `{"t":"2024-05-01T12:00:00Z","src":"one-o`, nil},
		{"zeros", "\x00\x00\x00\x00\x00\x00\x00\x00", nil},
		{"a line that is not a record", "garbage\n", nil},
		{"a record with half a line after it", string(appendRecord(nil, &whole)) + "{", []Line{whole}},
	}
	for _, tt := range tests {
		t.Run("drops a torn last record: "+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, SegmentBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, s, testLines("app", "one-off-1", 0, 30))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := segmentFiles(t, dir, "app")
			names := slices.Sorted(func(yield func(string) bool) {
				for name := range files {
					if !yield(name) {
						return
					}
				}
			})
			newest := filepath.Join(dir, "app", names[len(names)-1])
			f, err := os.OpenFile(newest, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(tt.garbage); err != nil {
				t.Fatal(err)
			}
			f.Close()

			s = openStore(t, Options{Dir: dir, SegmentBytes: 1024})
			want := append(testLines("app", "one-off-1", 0, 30), tt.kept...)
			if d := sameLines(mustTail(t, s, "app", Query{Lines: 1000}), want); d != "" {
				t.Errorf("after Open: %s", d)
			}
			mustAppend(t, s, testLines("app", "one-off-1", 30, 40))
			want = append(want, testLines("app", "one-off-1", 30, 40)...)
			if d := sameLines(mustTail(t, s, "app", Query{Lines: 1000}), want); d != "" {
				t.Errorf("after Append: %s", d)
			}
			checkRecords(t, dir, "app")
		})
	}
}

func TestStore_Resume(t *testing.T) {
	ctx := context.Background()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	line := func(source string, ms int) Line {
		return Line{Time: at(ms), App: "app", Source: source, Stream: Stdout, Text: "x"}
	}
	errLine := func(source string, ms int) Line {
		l := line(source, ms)
		l.Stream = Stderr
		return l
	}
	type cursor struct{ count, ms int } // the time is at(ms) when count > 0
	tests := []struct {
		name           string
		lines          []Line
		source         string
		stdout, stderr cursor
	}{
		{"no lines", nil, "one-off-1", cursor{}, cursor{}},
		{"only other sources", []Line{line("one-off-2", 1)}, "one-off-1", cursor{}, cursor{}},
		{"one line", []Line{line("one-off-1", 5)}, "one-off-1", cursor{1, 5}, cursor{}},
		{
			"a run of 3 among another source's lines",
			[]Line{
				line("one-off-1", 1), line("one-off-1", 2),
				line("one-off-1", 3), line("one-off-2", 3), line("one-off-2", 4),
				line("one-off-1", 3), line("one-off-2", 5),
				line("one-off-1", 3), line("one-off-2", 6),
			},
			"one-off-1", cursor{3, 3}, cursor{},
		},
		{
			"the run ends at an earlier time",
			[]Line{line("one-off-1", 3), line("one-off-1", 2), line("one-off-1", 3), line("one-off-1", 3)},
			"one-off-1", cursor{2, 3}, cursor{},
		},
		{
			// The streams' lines may be stored out of time order: each
			// stream has its own cursor.
			"streams out of time order",
			[]Line{line("one-off-1", 1), line("one-off-1", 4), errLine("one-off-1", 3), errLine("one-off-1", 3), line("one-off-1", 5), line("one-off-1", 6)},
			"one-off-1", cursor{1, 6}, cursor{2, 3},
		},
		{"a source that is a prefix", []Line{line("one-off-10", 1)}, "one-off-1", cursor{}, cursor{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, SegmentBytes: 256})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			// One line per Append, across segments.
			for _, l := range tt.lines {
				mustAppend(t, s, []Line{l})
			}
			check := func(when string) {
				t.Helper()
				got, err := s.Resume(ctx, "app", tt.source)
				if err != nil {
					t.Fatalf("%s: Resume: %v", when, err)
				}
				for _, c := range []struct {
					stream string
					got    oneoff.StreamCursor
					want   cursor
				}{{Stdout, got.Stdout, tt.stdout}, {Stderr, got.Stderr, tt.stderr}} {
					var want time.Time
					if c.want.count > 0 {
						want = at(c.want.ms)
					}
					if c.got.Count != c.want.count || !c.got.Time.Equal(want) {
						t.Errorf("%s: %s cursor = %d at %v, want %d at %v", when, c.stream, c.got.Count, c.got.Time, c.want.count, want)
					}
				}
			}
			check("before Close")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(Options{Dir: dir, SegmentBytes: 256}); err != nil {
				t.Fatal(err)
			}
			check("after Open")
		})
	}
}

// follow runs Follow in a goroutine, collecting what fn gets; stop cancels
// it and returns Follow's error.
type follow struct {
	mu      sync.Mutex
	lines   []Line
	calls   int
	empty   bool          // fn got an empty slice
	changed chan struct{} // signalled when lines grow
	cancel  context.CancelFunc
	err     chan error
}

func startFollow(t *testing.T, s *Store, app string, q Query) *follow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follow{changed: make(chan struct{}, 1), cancel: cancel, err: make(chan error, 1)}
	go func() {
		f.err <- s.Follow(ctx, app, q, func(lines []Line) error {
			f.mu.Lock()
			f.lines = append(f.lines, lines...)
			f.calls++
			f.empty = f.empty || len(lines) == 0
			f.mu.Unlock()
			select {
			case f.changed <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	t.Cleanup(func() { f.cancel() })
	return f
}

// waitFor waits until the follower has at least n lines and returns them.
func (f *follow) waitFor(n int) []Line {
	for {
		f.mu.Lock()
		lines := slices.Clone(f.lines)
		f.mu.Unlock()
		if len(lines) >= n {
			return lines
		}
		<-f.changed
	}
}

// stop cancels the follower and returns Follow's error.
func (f *follow) stop() error {
	f.cancel()
	return <-f.err
}

func TestStore_Follow(t *testing.T) {
	ctx := context.Background()

	t.Run("tail then 10000 appended lines", func(t *testing.T) {
		s := openStore(t, Options{SegmentBytes: 64 << 10})
		mustAppend(t, s, testLines("app", "one-off-1", 0, 50))
		f := startFollow(t, s, "app", Query{Lines: 20})
		f.waitFor(20) // the tail: the lines appended from now on are new

		const n = 10_000
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 50; i < 50+n; {
				// Batches of 1 to 7 lines, some of another app.
				k := min(1+i%7, 50+n-i)
				lines := testLines("app", "one-off-1", i, i+k)
				lines = append(lines, testLine("other", "one-off-1", i))
				if err := s.Append(ctx, lines); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				i += k
			}
		})
		got := f.waitFor(20 + n)
		wg.Wait()
		if err := f.stop(); err != nil {
			t.Errorf("Follow: got %v, want nil after cancel", err)
		}
		if d := sameLines(got, testLines("app", "one-off-1", 30, 50+n)); d != "" {
			t.Error(d)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if d := sameLines(f.lines, got); d != "" {
			t.Errorf("lines after the last: %s", d)
		}
		if f.empty {
			t.Error("fn got an empty slice")
		}
	})

	t.Run("source", func(t *testing.T) {
		s := openStore(t, Options{SegmentBytes: 1024})
		var all []Line
		for i := range 100 {
			all = append(all, testLine("app", fmt.Sprintf("one-off-%d", i%2), i))
		}
		mustAppend(t, s, all[:40])
		f := startFollow(t, s, "app", Query{Lines: 5, Source: "one-off-1"})
		f.waitFor(5)
		for _, l := range all[40:] {
			mustAppend(t, s, []Line{l})
		}
		got := f.waitFor(5 + 30)
		if err := f.stop(); err != nil {
			t.Errorf("Follow: %v", err)
		}
		var want []Line
		for _, l := range all {
			if l.Source == "one-off-1" {
				want = append(want, l)
			}
		}
		if d := sameLines(got, want[15:]); d != "" {
			t.Error(d)
		}
	})

	t.Run("an app without a log yet", func(t *testing.T) {
		s := openStore(t, Options{})
		f := startFollow(t, s, "new", Query{})
		// Follow may start after some of the appends: their lines are then
		// its tail.
		for i := range 3 {
			mustAppend(t, s, testLines("new", "one-off-1", i, i+1))
		}
		got := f.waitFor(3)
		if err := f.stop(); err != nil {
			t.Errorf("Follow: %v", err)
		}
		if d := sameLines(got, testLines("new", "one-off-1", 0, 3)); d != "" {
			t.Error(d)
		}
	})

	t.Run("no tail", func(t *testing.T) {
		s := openStore(t, Options{})
		mustAppend(t, s, testLines("app", "one-off-1", 0, 10))
		f := startFollow(t, s, "app", Query{Lines: -1})
		// Append until the follower, which starts at some point, gets a line.
		next := 10
		for {
			mustAppend(t, s, testLines("app", "one-off-1", next, next+1))
			next++
			f.mu.Lock()
			n := len(f.lines)
			f.mu.Unlock()
			if n > 0 {
				break
			}
			runtime.Gosched()
		}
		mustAppend(t, s, testLines("app", "one-off-1", next, next+3))
		next += 3
		first := f.waitFor(1)[0]
		from := int(first.Time.Sub(base) / time.Millisecond)
		if from < 10 {
			t.Fatalf("first line: got line %d, want one appended after Follow started", from)
		}
		got := f.waitFor(next - from)
		if err := f.stop(); err != nil {
			t.Errorf("Follow: %v", err)
		}
		if d := sameLines(got, testLines("app", "one-off-1", from, next)); d != "" {
			t.Error(d)
		}
	})

	t.Run("returns fn's error", func(t *testing.T) {
		s := openStore(t, Options{})
		mustAppend(t, s, testLines("app", "one-off-1", 0, 3))
		errStop := errors.New("stop")
		calls := 0
		err := s.Follow(ctx, "app", Query{}, func(lines []Line) error {
			calls++
			return errStop
		})
		if !errors.Is(err, errStop) {
			t.Errorf("got %v, want %v", err, errStop)
		}
		if got, want := calls, 1; got != want {
			t.Errorf("calls: got %d, want %d", got, want)
		}
	})

	t.Run("returns when the Store is closed", func(t *testing.T) {
		s, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, testLines("app", "one-off-1", 0, 1))
		f := startFollow(t, s, "app", Query{})
		f.waitFor(1)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-f.err; !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("got %v, want an ErrUnavailable error", err)
		}
	})

	t.Run("a context already done", func(t *testing.T) {
		s := openStore(t, Options{})
		mustAppend(t, s, testLines("app", "one-off-1", 0, 1))
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err := s.Follow(ctx, "app", Query{}, func([]Line) error {
			t.Error("fn called")
			return nil
		})
		if err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})

	t.Run("after retention deleted its segment", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, Options{Dir: dir, MaxBytesPerApp: 4096, SegmentBytes: 1024})
		mustAppend(t, s, testLines("app", "one-off-1", 0, 5))
		// fn blocks on its first call, the tail, while the log turns over.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		entered, release := make(chan struct{}), make(chan struct{})
		var mu sync.Mutex
		var got []Line
		done := make(chan error, 1)
		go func() {
			first := true
			done <- s.Follow(ctx, "app", Query{}, func(lines []Line) error {
				if first {
					first = false
					close(entered)
					<-release
				}
				mu.Lock()
				got = append(got, lines...)
				last := got[len(got)-1]
				mu.Unlock()
				if last.Text == testLine("app", "one-off-1", 999).Text {
					cancel()
				}
				return nil
			})
		}()
		<-entered
		for i := 5; i < 1000; i += 5 {
			mustAppend(t, s, testLines("app", "one-off-1", i, i+5))
		}
		if _, ok := segmentFiles(t, dir, "app")["00000001.log"]; ok {
			t.Fatal("retention kept the first segment")
		}
		close(release)
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		// The tail, then a gap for what retention deleted, then the rest in
		// order, without repeats.
		if d := sameLines(got[:5], testLines("app", "one-off-1", 0, 5)); d != "" {
			t.Errorf("tail: %s", d)
		}
		rest := got[5:]
		if len(rest) == 0 || len(rest) >= 995 {
			t.Fatalf("after the tail: got %d lines, want some lost to retention", len(rest))
		}
		first := 1000 - len(rest)
		if d := sameLines(rest, testLines("app", "one-off-1", first, 1000)); d != "" {
			t.Errorf("after the tail: %s", d)
		}
	})
}

func TestStore_Subscribe(t *testing.T) {
	s := openStore(t, Options{})
	var mu sync.Mutex
	var got [][]Line
	cancel := s.Subscribe(func(lines []Line) {
		mu.Lock()
		got = append(got, lines)
		mu.Unlock()
	})
	batches := [][]Line{
		testLines("web", "one-off-1", 0, 3),
		{testLine("web", "one-off-1", 3), testLine("api", "one-off-2", 0)},
		testLines("api", "one-off-2", 1, 2),
	}
	for _, b := range batches {
		mustAppend(t, s, b)
	}
	cancel()
	cancel() // twice is fine
	mustAppend(t, s, testLines("web", "one-off-1", 4, 5))

	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(batches) {
		t.Fatalf("got %d batches, want %d", len(got), len(batches))
	}
	for i := range batches {
		if d := sameLines(got[i], batches[i]); d != "" {
			t.Errorf("batch %d: %s", i, d)
		}
	}

	t.Run("not for a failed Append", func(t *testing.T) {
		calls := 0
		cancel := s.Subscribe(func([]Line) { calls++ })
		defer cancel()
		bad := testLine("web", "one-off-1", 0)
		bad.Stream = "tty"
		if err := s.Append(context.Background(), []Line{bad}); err == nil {
			t.Fatal("Append: got no error")
		}
		if calls != 0 {
			t.Errorf("calls: got %d, want 0", calls)
		}
	})
}

func TestStore_appName(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Options{})
	names := []string{"", "..", ".", "../x", "a/b", "App", "-app", "a_b", "a.b", "app\x00", string(bytes.Repeat([]byte("a"), 64))}
	for _, name := range names {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			calls := []struct {
				method string
				err    error
			}{
				{"Append", s.Append(ctx, []Line{testLine(name, "one-off-1", 0)})},
				{"Tail", func() error { _, err := s.Tail(ctx, name, Query{}); return err }()},
				{"Resume", func() error { _, err := s.Resume(ctx, name, "one-off-1"); return err }()},
				{"Follow", s.Follow(ctx, name, Query{}, func([]Line) error { return nil })},
			}
			for _, c := range calls {
				if !errors.Is(c.err, errdefs.ErrInvalid) {
					t.Errorf("%s: got %v, want an ErrInvalid error", c.method, c.err)
				}
			}
		})
	}
	t.Run("longest", func(t *testing.T) {
		name := string(bytes.Repeat([]byte("a"), 63))
		mustAppend(t, s, []Line{testLine(name, "one-off-1", 0)})
	})
}

func TestStore_Follow_fromStartUntil(t *testing.T) {
	ctx := context.Background()
	t.Run("streams the whole log, beyond MaxTailLines, and ends when asked", func(t *testing.T) {
		s := openStore(t, Options{SegmentBytes: 64 << 10})
		const n = MaxTailLines + 5000
		mustAppend(t, s, testLines("web", "one-off-1", 0, n))
		mustAppend(t, s, testLines("web", "one-off-2", 0, 10))
		done := make(chan struct{})
		close(done)
		var got []Line
		err := s.Follow(ctx, "web", Query{FromStart: true, Source: "one-off-1", Until: done}, func(lines []Line) error {
			got = append(got, lines...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := sameLines(got, testLines("web", "one-off-1", 0, n)); d != "" {
			t.Error(d)
		}
	})
	t.Run("lines appended before Until closes are all sent", func(t *testing.T) {
		s := openStore(t, Options{})
		until := make(chan struct{})
		got := make(chan []Line, 1)
		go func() {
			var all []Line
			_ = s.Follow(ctx, "web", Query{FromStart: true, Until: until}, func(lines []Line) error {
				all = append(all, lines...)
				return nil
			})
			got <- all
		}()
		mustAppend(t, s, testLines("web", "one-off-1", 0, 100))
		close(until)
		if d := sameLines(<-got, testLines("web", "one-off-1", 0, 100)); d != "" {
			t.Error(d)
		}
	})
}
