package cron

import (
	"os"
	"regexp"
	"testing"

	"github.com/oneoffd/oneoffd/oneoff"
)

// TestDocs_examples checks that the cron documents of docs/cron.md pass
// the daemon's default rules as they are written.
func TestDocs_examples(t *testing.T) {
	doc, err := os.ReadFile("../docs/cron.md")
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := oneoff.ParseSizes(oneoff.DefaultSizes)
	if err != nil {
		t.Fatal(err)
	}
	r := Rules{MaxTTL: oneoff.DefaultMaxLifetime}
	for _, s := range sizes {
		r.Sizes = append(r.Sizes, s.Name)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 2 {
		t.Fatalf("got %d JSON examples in docs/cron.md, want the two forms", len(blocks))
	}
	for i, b := range blocks {
		jobs, err := r.Parse(b[1])
		if err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, b[1])
			continue
		}
		if len(jobs) == 0 {
			t.Errorf("example %d has no jobs", i+1)
		}
	}
}
