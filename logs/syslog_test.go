package logs

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oneoffd/oneoffd/errdefs"
)

func TestAppendSyslogMessage(t *testing.T) {
	at := time.Date(2025, 1, 2, 4, 5, 6, 789123456, time.FixedZone("CET", 3600))
	line := Line{Time: at, App: "web", Source: "one-off-4821", Stream: Stdout, Text: "hello"}
	with := func(change func(*Line)) Line {
		l := line
		change(&l)
		return l
	}
	tests := []struct {
		name     string
		hostname string
		line     Line
		want     string
	}{
		{
			name:     "stdout is info",
			hostname: "host1",
			line:     line,
			want:     "<14>1 2025-01-02T03:05:06.789123Z host1 web one-off-4821 stdout - hello",
		},
		{
			name:     "stderr is err",
			hostname: "host1",
			line:     with(func(l *Line) { l.Stream = Stderr }),
			want:     "<11>1 2025-01-02T03:05:06.789123Z host1 web one-off-4821 stderr - hello",
		},
		{
			name: "empty fields are nil",
			line: with(func(l *Line) { l.Time, l.App, l.Source, l.Stream = time.Time{}, "", "", "" }),
			want: "<14>1 - - - - - - hello",
		},
		{
			name:     "empty text",
			hostname: "host1",
			line:     with(func(l *Line) { l.Text = "" }),
			want:     "<14>1 2025-01-02T03:05:06.789123Z host1 web one-off-4821 stdout - ",
		},
		{
			name:     "long fields cut to their limits",
			hostname: strings.Repeat("h", 300),
			line: with(func(l *Line) {
				l.App, l.Source, l.Stream = strings.Repeat("a", 60), strings.Repeat("p", 200), strings.Repeat("m", 40)
			}),
			want: "<14>1 2025-01-02T03:05:06.789123Z " + strings.Repeat("h", 255) + " " + strings.Repeat("a", 48) + " " +
				strings.Repeat("p", 128) + " " + strings.Repeat("m", 32) + " - hello",
		},
		{
			name:     "header fields printable ASCII only",
			hostname: "my host",
			line:     with(func(l *Line) { l.Source = "one-öff\t1" }),
			want:     "<14>1 2025-01-02T03:05:06.789123Z my_host web one-_ff_1 stdout - hello",
		},
		{
			// Octet counting needs no escaping: the text goes as it is.
			name:     "text kept as is, newlines and all",
			hostname: "host1",
			line:     with(func(l *Line) { l.Text = " two\nlines\tand ünïcode - " }),
			want:     "<14>1 2025-01-02T03:05:06.789123Z host1 web one-off-4821 stdout -  two\nlines\tand ünïcode - ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendSyslogMessage(nil, tt.hostname, tt.line))
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAppendSyslogFrame(t *testing.T) {
	lines := []Line{
		{App: "web", Source: "one-off-1", Stream: Stdout, Text: "ünïcödé ✓ 日本語"},
		{App: "web", Source: "one-off-1", Stream: Stderr, Text: "second\nfrämé"},
	}
	buf := []byte("already there|")
	for _, l := range lines {
		buf = appendSyslogFrame(buf, "h", l)
	}
	rest, ok := strings.CutPrefix(string(buf), "already there|")
	if !ok {
		t.Fatalf("the buffer's start was overwritten: %q", buf)
	}
	for i, l := range lines {
		lenText, after, ok := strings.Cut(rest, " ")
		if !ok {
			t.Fatalf("frame %d: no length in %q", i, rest)
		}
		n, err := strconv.Atoi(lenText)
		if err != nil || n > len(after) {
			t.Fatalf("frame %d: bad length %q before %q", i, lenText, after)
		}
		got, want := after[:n], string(appendSyslogMessage(nil, "h", l))
		if got != want {
			t.Errorf("frame %d: got %q, want %q", i, got, want)
		}
		if utf8.RuneCountInString(want) == len(want) {
			t.Fatalf("frame %d: test text has no multi-byte character", i)
		}
		rest = after[n:]
	}
	if rest != "" {
		t.Errorf("left after the frames: %q", rest)
	}
}

func TestParseDrainURL(t *testing.T) {
	valid := []struct {
		url      string
		tls      bool
		addr     string
		redacted string
	}{
		{"syslog+tls://logs.example.com:6514", true, "logs.example.com:6514", "syslog+tls://logs.example.com:6514"},
		{"syslog+tcp://10.0.0.1:601", false, "10.0.0.1:601", "syslog+tcp://10.0.0.1:601"},
		{"syslog://[::1]:514/", false, "[::1]:514", "syslog://[::1]:514/"},
		{"SYSLOG+TLS://host:1", true, "host:1", "syslog+tls://host:1"},
		{"syslog+tls://token:secret@host:6514", true, "host:6514", "syslog+tls://host:6514"},
	}
	for _, tt := range valid {
		t.Run(tt.url, func(t *testing.T) {
			got, err := parseDrainURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got.tls != tt.tls || got.addr != tt.addr || got.redacted != tt.redacted {
				t.Errorf("got tls %v, addr %q, redacted %q; want %v, %q, %q",
					got.tls, got.addr, got.redacted, tt.tls, tt.addr, tt.redacted)
			}
		})
	}

	invalid := []struct {
		url  string
		want string // in the message
	}{
		{"", "no scheme"},
		{"logs.example.com:514", "unsupported scheme"},
		{"http://logs.example.com:80", `unsupported scheme "http"`},
		{"syslog+udp://logs.example.com:514", `unsupported scheme "syslog+udp"`},
		{"syslog:logs.example.com:514", "no host"},
		{"syslog://logs.example.com", "no port"},
		{"syslog://:514", "no host"},
		{"syslog://logs.example.com:0", "port"},
		{"syslog://logs.example.com:65536", "port"},
		{"syslog://logs.example.com:514/path", "only a host and a port"},
		{"syslog://logs.example.com:514?x=1", "only a host and a port"},
		{"syslog+tls://user:secret@logs.example.com", "no port"},
		{"syslog+tls://user:secret@logs.example.com:port", "invalid port"},
		{"syslog://user:secret@logs example:514", "invalid character"},
	}
	for _, tt := range invalid {
		t.Run(tt.url, func(t *testing.T) {
			_, err := parseDrainURL(tt.url)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			e, _ := errdefs.As(err)
			if e.Code != "invalid_drain_url" {
				t.Errorf("code %q, want invalid_drain_url", e.Code)
			}
			msg := err.Error()
			for _, want := range []string{tt.want, "syslog+tls://host:port", "syslog+tcp://host:port", "syslog://host:port"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "secret") {
				t.Errorf("message %q shows the credentials", msg)
			}
		})
	}
}

func TestNewSyslogDrain(t *testing.T) {
	d, err := NewSyslogDrain(DrainConfig{URL: "syslog+tls://token:secret@logs.example.com:6514"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.URL(), "syslog+tls://logs.example.com:6514"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if got, want := d.tls.ServerName, "logs.example.com"; got != want {
		t.Errorf("TLS server name %q, want %q", got, want)
	}
	if got, want := len(d.ring), DefaultDrainBufferLines; got != want {
		t.Errorf("buffer of %d lines, want %d", got, want)
	}
	if d.hostname == "" {
		t.Error("no default hostname")
	}

	_, err = NewSyslogDrain(DrainConfig{URL: "https://logs.example.com"})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("NewSyslogDrain(https URL) = %v, want ErrInvalid", err)
	}
}

func TestSyslogDrain_Enqueue(t *testing.T) {
	tests := []struct {
		name        string
		size        int
		chunks      []int // lines per Enqueue call
		wantDropped uint64
	}{
		{name: "fits", size: 10, chunks: []int{3, 7}, wantDropped: 0},
		{name: "one at a time past the end", size: 10, chunks: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, wantDropped: 3},
		{name: "chunks wrapping around", size: 10, chunks: []int{4, 4, 4, 4, 4}, wantDropped: 10},
		{name: "one call larger than the buffer", size: 10, chunks: []int{5, 25}, wantDropped: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewSyslogDrain(DrainConfig{URL: "syslog://127.0.0.1:514", Allow: testAllow, BufferLines: tt.size})
			if err != nil {
				t.Fatal(err)
			}
			var all []Line
			for _, n := range tt.chunks {
				lines := drainLines("l", len(all)+n)[len(all):]
				all = append(all, lines...)
				d.Enqueue(lines)
			}
			s := d.Stats()
			wantBuffered := min(len(all), tt.size)
			if s.Dropped != tt.wantDropped || s.Buffered != wantBuffered {
				t.Errorf("dropped %d, buffered %d; want %d, %d", s.Dropped, s.Buffered, tt.wantDropped, wantBuffered)
			}
			got, _ := d.peek(len(all))
			if want := all[len(all)-wantBuffered:]; !sameDrainTexts(got, want) {
				t.Errorf("buffer holds %q, want the newest %q", drainTexts(got), drainTexts(want))
			}
		})
	}
}

func TestSyslogDrain_commit(t *testing.T) {
	d, err := NewSyslogDrain(DrainConfig{URL: "syslog://127.0.0.1:514", Allow: testAllow, BufferLines: 10})
	if err != nil {
		t.Fatal(err)
	}
	lines := drainLines("l", 16)
	d.Enqueue(lines[:8])
	batch, first := d.peek(5) // lines 0-4 are being written...
	d.Enqueue(lines[8:])      // ...while 0-5 are dropped to make room
	d.commit(first, len(batch))
	got, _ := d.peek(10)
	if want := lines[6:]; !sameDrainTexts(got, want) {
		t.Errorf("after commit the buffer holds %q, want %q", drainTexts(got), drainTexts(want))
	}
}

func TestSyslogDrain_backoff(t *testing.T) {
	d, err := NewSyslogDrain(DrainConfig{URL: "syslog://127.0.0.1:514", Allow: testAllow, MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for failures := 1; failures < 100; failures++ {
		ceiling := min(100*time.Millisecond<<min(failures-1, 20), 30*time.Second)
		for range 20 {
			got := d.backoff(failures)
			if got < 100*time.Millisecond || got > ceiling {
				t.Fatalf("backoff(%d) = %v, want between 100ms and %v", failures, got, ceiling)
			}
		}
	}
}

func sameDrainTexts(a, b []Line) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Text != b[i].Text {
			return false
		}
	}
	return true
}
