package apitypes

import (
	"strconv"
	"strings"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

// ParseTTL reads a detached one-off's lifetime as a request gives it: a
// positive duration with its unit, such as "90m" or "2h".
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, errdefs.Invalid("invalid_ttl", "ttl %q has no unit: write it with one, such as %sm or %sh", s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errdefs.Invalid("invalid_ttl", "ttl %q is not a positive duration such as \"90m\" or \"2h\"", s)
	}
	return d, nil
}
