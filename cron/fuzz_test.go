package cron

import (
	"errors"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// FuzzRules_Parse checks that a cron document is either refused with an
// invalid-input error or accepted with jobs that read back the same from
// their normalized form.
func FuzzRules_Parse(f *testing.F) {
	for _, seed := range []string{
		`{"jobs": [{"command": "*/10 * * * * rake cleanup", "size": "M"}]}`,
		`{"jobs": [{"name": "cleanup", "schedule": "*/10 * * * *", "command": "rake cleanup", "size": "M", "ttl": "1h"}]}`,
		`{"jobs": [{"command": "CRON_TZ=Europe/Paris @daily x"}]}`,
		`{"jobs": [{"command": "@every 90m x"}, {"command": "@every 90m x"}]}`,
		`{"jobs": [{"name": "t", "schedule": "TZ=Asia/Tokyo 0 9 * JAN MON-FRI", "command": "x", "overlap": "replace"}]}`,
		`{"jobs": [{"command": "0 0 31 2 * never"}]}`,
		`{"jobs": null}`, `null`, `[]`, `{"jobs": [{}]}`,
	} {
		f.Add(seed)
	}
	r := Rules{Sizes: []string{"S", "M", "L"}, MaxTTL: 24 * time.Hour}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, doc string) {
		jobs, err := r.Parse([]byte(doc))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v is not an invalid-input error", err)
			}
			return
		}
		if len(jobs) == 0 {
			return
		}
		norm, err := r.Normalize([]byte(doc))
		if err != nil {
			t.Fatalf("Normalize of an accepted document: %v", err)
		}
		back, err := r.Parse(norm)
		if err != nil || len(back) != len(jobs) {
			t.Fatalf("normalized %s reads back as %v, %v", norm, back, err)
		}
		for i := range jobs {
			if back[i].Name != jobs[i].Name || !back[i].Next(from).Equal(jobs[i].Next(from)) || back[i].Interval() < DefaultMinInterval {
				t.Fatalf("job %d: %+v reads back as %+v", i, jobs[i], back[i])
			}
		}
	})
}
