package testenv

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
)

// CapabilityNames decodes a capability mask, as /proc/self/status shows it
// (CapEff, CapBnd...), into sorted CAP_ names; bits of no known capability
// are named as such.
func CapabilityNames(tb testing.TB, hexMask string) []string {
	tb.Helper()
	mask, err := strconv.ParseUint(hexMask, 16, 64)
	if err != nil {
		tb.Fatalf("capability mask %q: %v", hexMask, err)
	}
	names := []string{}
	for _, c := range capability.ListKnown() {
		if mask&(1<<uint(c)) != 0 {
			names = append(names, "CAP_"+strings.ToUpper(c.String()))
			mask &^= 1 << uint(c)
		}
	}
	if mask != 0 {
		names = append(names, fmt.Sprintf("unknown bits %#x", mask))
	}
	slices.Sort(names)
	return names
}

// Get answers a GET to url, with the bearer token if it is not empty: the
// status and the body.
func Get(tb testing.TB, url, token string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
