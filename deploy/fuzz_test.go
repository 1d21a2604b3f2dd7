package deploy_test

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// FuzzParseProcfile checks that any text either parses into valid process
// types, which render back to a Procfile that parses the same, or is
// refused as invalid input with the line named.
func FuzzParseProcfile(f *testing.F) {
	for _, seed := range []string{
		"web: bundle exec puma\nworker: bundle exec sidekiq\n",
		"# comment\n\nrelease: rake db:migrate\r\n",
		"\ufeffweb: a:b:c",
		"web:",
		"web: one\nweb: two",
		"bad name: x",
		"no colon",
		"\x00: \x00",
	} {
		f.Add(seed)
	}
	name := regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	f.Fuzz(func(t *testing.T, text string) {
		procs, err := deploy.ParseProcfile(text)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "Procfile line") {
				t.Fatalf("error %v is not an invalid-input error naming the line", err)
			}
			return
		}
		var b strings.Builder
		for _, n := range slices.Sorted(maps.Keys(procs)) {
			cmd := procs[n]
			if !name.MatchString(n) || cmd == "" || cmd != strings.TrimSpace(cmd) || strings.ContainsAny(cmd, "\n") {
				t.Fatalf("accepted process type %q with command %q", n, cmd)
			}
			fmt.Fprintf(&b, "%s: %s\n", n, cmd)
		}
		again, err := deploy.ParseProcfile(b.String())
		if err != nil || !maps.Equal(again, procs) {
			t.Fatalf("round trip of %q = %v, %v; want %v", b.String(), again, err, procs)
		}
	})
}

// FuzzValidateEnv checks that an accepted variable can be given to a
// process: a POSIX name, no NUL byte, within the kernel's length bound.
func FuzzValidateEnv(f *testing.F) {
	f.Add("DATABASE_URL", "postgres://u:p@db/app")
	f.Add("_x1", "")
	f.Add("1ABC", "v")
	f.Add("A=B", "v")
	f.Add("A", "nul\x00byte")
	f.Add("PATH", strings.Repeat("x", deploy.MaxEnvVar))
	f.Add("ÉTÉ", "v")
	f.Fuzz(func(t *testing.T, key, value string) {
		err := deploy.ValidateEnv(map[string]string{key: value})
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v is not an invalid-input error", err)
			}
			return
		}
		if key == "" || strings.ContainsAny(key, "= \x00") || (key[0] >= '0' && key[0] <= '9') {
			t.Fatalf("accepted name %q", key)
		}
		for _, r := range key {
			if r > 127 {
				t.Fatalf("accepted non-ASCII name %q", key)
			}
		}
		if strings.Contains(value, "\x00") || len(key)+1+len(value) > deploy.MaxEnvVar {
			t.Fatalf("accepted value of %d bytes for %q", len(value), key)
		}
	})
}
