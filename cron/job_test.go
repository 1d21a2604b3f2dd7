package cron

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

func parseOne(t *testing.T, r Rules, doc string) Job {
	t.Helper()
	jobs, err := r.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	if len(jobs) != 1 {
		t.Fatalf("Parse(%s): got %d jobs, want 1", doc, len(jobs))
	}
	return jobs[0]
}

func TestRules_Parse_Forms(t *testing.T) {
	from := time.Date(2026, 1, 15, 10, 3, 0, 0, time.UTC) // a Thursday
	tests := []struct {
		name, doc                  string
		wantName, wantSched, wantZ string
		wantCommand                string
		wantNext                   time.Time
	}{
		{"scalingo", `{"jobs": [{"command": "*/10 * * * * rake cleanup", "size": "M"}]}`,
			"rake-cleanup", "*/10 * * * *", "", "rake cleanup", time.Date(2026, 1, 15, 10, 10, 0, 0, time.UTC)},
		{"scalingo, the command kept as written", `{"jobs": [{"command": "0 3 * * *\techo 'a  b'  >> /tmp/x"}]}`,
			"echo-a-b-tmp-x", "0 3 * * *", "", "echo 'a  b'  >> /tmp/x", time.Date(2026, 1, 16, 3, 0, 0, 0, time.UTC)},
		{"explicit", `{"jobs": [{"name": "cleanup", "schedule": "*/10 * * * *", "command": "rake cleanup", "size": "M", "ttl": "1h"}]}`,
			"cleanup", "*/10 * * * *", "", "rake cleanup", time.Date(2026, 1, 15, 10, 10, 0, 0, time.UTC)},
		{"hourly", `{"jobs": [{"command": "@hourly ./report"}]}`,
			"report", "@hourly", "", "./report", time.Date(2026, 1, 15, 11, 0, 0, 0, time.UTC)},
		{"daily", `{"jobs": [{"name": "d", "schedule": "@daily", "command": "./report"}]}`,
			"d", "@daily", "", "./report", time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC)},
		{"weekly", `{"jobs": [{"name": "w", "schedule": "@weekly", "command": "x"}]}`,
			"w", "@weekly", "", "x", time.Date(2026, 1, 18, 0, 0, 0, 0, time.UTC)},
		{"monthly", `{"jobs": [{"name": "m", "schedule": "@monthly", "command": "x"}]}`,
			"m", "@monthly", "", "x", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"yearly", `{"jobs": [{"name": "y", "schedule": "@yearly", "command": "x"}]}`,
			"y", "@yearly", "", "x", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"every", `{"jobs": [{"command": "@every 90m bin/sync --all"}]}`,
			"bin-sync-all", "@every 90m", "", "bin/sync --all", from.Add(90 * time.Minute)},
		{"named days and months", `{"jobs": [{"name": "n", "schedule": "0 9 * JAN MON-FRI", "command": "x"}]}`,
			"n", "0 9 * JAN MON-FRI", "", "x", time.Date(2026, 1, 16, 9, 0, 0, 0, time.UTC)},
		{"cron_tz prefix in scalingo form", `{"jobs": [{"command": "CRON_TZ=Europe/Paris 0 9 * * * ./morning"}]}`,
			"morning", "0 9 * * *", "Europe/Paris", "./morning", time.Date(2026, 1, 16, 8, 0, 0, 0, time.UTC)},
		{"tz prefix in schedule", `{"jobs": [{"name": "t", "schedule": "TZ=America/New_York 0 9 * * *", "command": "x"}]}`,
			"t", "0 9 * * *", "America/New_York", "x", time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)},
		{"timezone field", `{"jobs": [{"name": "t", "schedule": "0 9 * * *", "timezone": "Asia/Tokyo", "command": "x"}]}`,
			"t", "0 9 * * *", "Asia/Tokyo", "x", time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := parseOne(t, Rules{Sizes: []string{"S", "M"}}, tt.doc)
			if j.Name != tt.wantName || j.Schedule != tt.wantSched || j.Timezone != tt.wantZ || j.Command != tt.wantCommand {
				t.Errorf("got name %q schedule %q timezone %q command %q, want %q %q %q %q",
					j.Name, j.Schedule, j.Timezone, j.Command, tt.wantName, tt.wantSched, tt.wantZ, tt.wantCommand)
			}
			if got := j.Next(from); !got.Equal(tt.wantNext) {
				t.Errorf("Next(%s): got %s, want %s", from, got.UTC(), tt.wantNext)
			}
			// The normalized form reads back to the same job.
			norm, err := Rules{}.Normalize([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			back := parseOne(t, Rules{}, string(norm))
			if back.Name != j.Name || back.Schedule != j.Schedule || back.Timezone != j.Timezone || !back.Next(from).Equal(j.Next(from)) {
				t.Errorf("normalized %s reads back as %+v, want %+v", norm, back, j)
			}
		})
	}
}

func TestRules_Parse_Names(t *testing.T) {
	jobs, err := Rules{}.Parse([]byte(`{"jobs": [
		{"command": "0 * * * * rake cleanup"},
		{"command": "30 * * * * rake cleanup"},
		{"command": "0 3 * * * bundle exec rails runner 'Report.nightly' > /dev/null"}]}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	if got, want := strings.Join(names, ","), "rake-cleanup,rake-cleanup-2,bundle-exec-rails-runner"; got != want {
		t.Errorf("names: got %s, want %s", got, want)
	}
	for _, doc := range []string{"", "null", `{"jobs": []}`} {
		if jobs, err := (Rules{}).Parse([]byte(doc)); err != nil || len(jobs) != 0 {
			t.Errorf("Parse(%q): got %v, %v, want no jobs", doc, jobs, err)
		}
	}
}

func TestRules_Parse_Errors(t *testing.T) {
	r := Rules{Sizes: []string{"S", "M", "L"}, MaxTTL: 24 * time.Hour}
	tests := []struct{ name, doc, want string }{
		{"bad expression", `{"jobs": [{"name": "cleanup", "schedule": "*/10 * * *", "command": "x"}]}`, `cron job "cleanup": schedule "*/10 * * *" is invalid`},
		{"bad field", `{"jobs": [{"name": "c", "schedule": "61 * * * *", "command": "x"}]}`, `cron job "c": schedule "61 * * * *" is invalid`},
		{"scalingo without command", `{"jobs": [{"command": "*/10 * * * *"}]}`, `cron job 1: "*/10 * * * *" holds no schedule and command`},
		{"unknown size", `{"jobs": [{"name": "big", "schedule": "@daily", "command": "x", "size": "2XL"}]}`, `cron job "big": size "2XL" is unknown: use one of S, M, L`},
		{"duplicate name", `{"jobs": [{"name": "a", "schedule": "@daily", "command": "x"}, {"name": "a", "schedule": "@hourly", "command": "y"}]}`, `cron job "a": the name is used by another job`},
		{"too frequent", `{"jobs": [{"name": "fast", "schedule": "@every 30s", "command": "x"}]}`, `cron job "fast": schedule "@every 30s" runs every 30s, more often than the 1m0s`},
		{"unknown time zone", `{"jobs": [{"name": "z", "schedule": "@daily", "timezone": "Mars/Olympus", "command": "x"}]}`, `cron job "z": time zone "Mars/Olympus" is unknown`},
		{"time zones differ", `{"jobs": [{"name": "z", "schedule": "CRON_TZ=Europe/Paris @daily", "timezone": "UTC", "command": "x"}]}`, `cron job "z": the schedule's time zone Europe/Paris and the timezone field UTC differ`},
		{"bad ttl", `{"jobs": [{"name": "t", "schedule": "@daily", "command": "x", "ttl": "soon"}]}`, `cron job "t": ttl "soon" is invalid`},
		{"ttl over the maximum", `{"jobs": [{"name": "t", "schedule": "@daily", "command": "x", "ttl": "48h"}]}`, `cron job "t": ttl 48h0m0s is over`},
		{"bad overlap", `{"jobs": [{"name": "o", "schedule": "@daily", "command": "x", "overlap": "queue"}]}`, `cron job "o": overlap "queue" is unknown`},
		{"bad name", `{"jobs": [{"name": "Clean Up", "schedule": "@daily", "command": "x"}]}`, `cron job "Clean Up": the name is invalid`},
		{"empty command", `{"jobs": [{"name": "e", "schedule": "@daily", "command": " "}]}`, `cron job "e": the command is empty`},
		{"unknown field", `{"jobs": [{"name": "u", "schedule": "@daily", "command": "x", "sise": "M"}]}`, `unknown field "sise"`},
		{"not json", `jobs: []`, `the cron definitions are not valid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse: no error, want %q", tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v is not an invalid-input error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %q, want it to say %q", err, tt.want)
			}
		})
	}
	t.Run("a lower minimum allows seconds", func(t *testing.T) {
		j := parseOne(t, Rules{MinInterval: time.Second}, `{"jobs": [{"name": "fast", "schedule": "@every 2s", "command": "x"}]}`)
		if j.Interval() != 2*time.Second || j.Deadline() != 2*time.Second {
			t.Errorf("interval %s deadline %s, want 2s and 2s", j.Interval(), j.Deadline())
		}
	})
	t.Run("the deadline is at most an hour", func(t *testing.T) {
		j := parseOne(t, Rules{}, `{"jobs": [{"name": "d", "schedule": "@daily", "command": "x"}]}`)
		if j.Interval() != 24*time.Hour || j.Deadline() != time.Hour {
			t.Errorf("interval %s deadline %s, want 24h and 1h", j.Interval(), j.Deadline())
		}
	})
}

func TestJob_Next_DST(t *testing.T) {
	paris := func(y int, m time.Month, d, h, min int) time.Time {
		loc, _ := time.LoadLocation("Europe/Paris")
		return time.Date(y, m, d, h, min, 0, 0, loc)
	}
	ticks := func(j Job, from time.Time, n int) []time.Time {
		var out []time.Time
		for t := from; len(out) < n; {
			t = j.Next(t)
			out = append(out, t)
		}
		return out
	}
	daily := parseOne(t, Rules{}, `{"jobs": [{"name": "d", "schedule": "0 9 * * *", "timezone": "Europe/Paris", "command": "x"}]}`)
	t.Run("the wall-clock time holds across the change", func(t *testing.T) {
		got := ticks(daily, time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC), 2)
		// 09:00 in Paris is 08:00 UTC before the change and 07:00 after.
		want := []time.Time{time.Date(2026, 3, 29, 7, 0, 0, 0, time.UTC), time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC)}
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("tick %d: got %s, want %s", i, got[i].UTC(), want[i])
			}
		}
	})
	t.Run("a time that comes twice runs once", func(t *testing.T) {
		j := parseOne(t, Rules{}, `{"jobs": [{"name": "d", "schedule": "30 2 * * *", "timezone": "Europe/Paris", "command": "x"}]}`)
		got := ticks(j, paris(2026, 10, 24, 12, 0), 2)
		want := []time.Time{time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 26, 1, 30, 0, 0, time.UTC)}
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("tick %d: got %s, want %s", i, got[i].UTC(), want[i])
			}
		}
	})
	t.Run("an hourly job keeps its real-time interval when clocks go back", func(t *testing.T) {
		j := parseOne(t, Rules{}, `{"jobs": [{"name": "h", "schedule": "0 * * * *", "timezone": "Europe/Paris", "command": "x"}]}`)
		got := ticks(j, time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC), 3)
		for i := 1; i < len(got); i++ {
			if d := got[i].Sub(got[i-1]); d != time.Hour {
				t.Errorf("ticks %s and %s are %s apart, want 1h", got[i-1].UTC(), got[i].UTC(), d)
			}
		}
	})
	t.Run("a time that does not exist is skipped that day", func(t *testing.T) {
		j := parseOne(t, Rules{}, `{"jobs": [{"name": "d", "schedule": "30 2 * * *", "timezone": "Europe/Paris", "command": "x"}]}`)
		got := j.Next(paris(2026, 3, 28, 12, 0))
		if want := paris(2026, 3, 30, 2, 30); !got.Equal(want) {
			t.Errorf("Next: got %s, want %s", got, want)
		}
	})
}
