package oneoff_test

import (
	"math"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/oneoff"
)

// FuzzParseSizes checks that a size table either parses into sizes an
// engine can be given, which render back to a table that parses the same,
// or is refused.
func FuzzParseSizes(f *testing.F) {
	for _, seed := range []string{
		oneoff.DefaultSizes,
		" tiny:16MiB:0.25:64 , big:2GB:2:4096",
		"S:256MiB:NaN:1",
		"S:256MiB:Inf:1",
		"S:18446744073709551615:1:1",
		"S:256MiB:1e308:1",
		"S:256MiB:0x1p-2:1",
		"a:b:c:d,e",
		":::",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		sizes, err := oneoff.ParseSizes(spec)
		if err != nil {
			return
		}
		parts := make([]string, len(sizes))
		for i, s := range sizes {
			if s.Name == "" || strings.ContainsAny(s.Name, ":, \t\n") {
				t.Fatalf("accepted name %q", s.Name)
			}
			if s.Memory < 6<<20 || s.Memory > 1<<50 {
				t.Fatalf("accepted memory %d", s.Memory)
			}
			if math.IsNaN(s.CPUs) || s.CPUs < 0.01 || s.CPUs > 1024 || int64(s.CPUs*1e9) <= 0 {
				t.Fatalf("accepted CPUs %v", s.CPUs)
			}
			if s.Pids < 1 {
				t.Fatalf("accepted pids %d", s.Pids)
			}
			parts[i] = s.String()
		}
		again, err := oneoff.ParseSizes(strings.Join(parts, ","))
		if err != nil || len(again) != len(sizes) {
			t.Fatalf("round trip of %v: %v, %v", parts, again, err)
		}
		for i := range sizes {
			if again[i] != sizes[i] {
				t.Fatalf("round trip of %s = %+v, want %+v", parts[i], again[i], sizes[i])
			}
		}
	})
}
