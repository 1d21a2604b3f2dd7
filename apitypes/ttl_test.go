package apitypes_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/errdefs"
)

func TestParseTTL(t *testing.T) {
	for _, tt := range []struct {
		in, mentions string
	}{
		{"5", "no unit"},
		{"0", "no unit"},
		{"0s", "positive"},
		{"-1h", "positive"},
		{"soon", "positive"},
	} {
		t.Run("refuses "+tt.in, func(t *testing.T) {
			_, err := apitypes.ParseTTL(tt.in)
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.mentions) {
				t.Errorf("got %v, want an invalid-input error mentioning %q", err, tt.mentions)
			}
		})
	}
	if d, err := apitypes.ParseTTL("1h30m"); err != nil || d != 90*time.Minute {
		t.Errorf("1h30m = %s, %v; want 1h30m0s", d, err)
	}
}

// FuzzParseTTL checks that a lifetime is either a positive duration or an
// invalid-input error that quotes it.
func FuzzParseTTL(f *testing.F) {
	for _, seed := range []string{"90m", "2h", "1h30m", "5", "0", "-1h", "1.5h", "9223372036854775807ns", "99999999999h", "", " 2h "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := apitypes.ParseTTL(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v is not an invalid-input error", err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("accepted %q as %s", s, d)
		}
	})
}
