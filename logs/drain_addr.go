package logs

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"syscall"

	"github.com/oneoffd/oneoffd/errdefs"
)

// DrainAllow lists the networks drains may reach although they are internal
// (loopback, link-local, private...): the operator's exceptions to the rule
// that a tenant's drain is never aimed inside the platform.
type DrainAllow []netip.Prefix

// ParseDrainAllow parses a comma-separated list of CIDR prefixes, such as
// "10.1.2.0/24,fd00:1::/64"; a bare address stands for itself alone.
func ParseDrainAllow(list string) (DrainAllow, error) {
	var allow DrainAllow
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR prefix such as 10.1.2.0/24 or fd00::/64", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		allow = append(allow, p.Masked())
	}
	return allow, nil
}

// String returns the list as ParseDrainAllow reads it.
func (a DrainAllow) String() string {
	s := make([]string, len(a))
	for i, p := range a {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// permits reports whether addr is in one of the allowed networks.
func (a DrainAllow) permits(addr netip.Addr) bool {
	for _, p := range a {
		if p.Contains(addr) || (addr.Is4In6() && p.Contains(addr.Unmap())) {
			return true
		}
	}
	return false
}

// internalNets are the networks a drain may not reach unless allowed, each
// with what it is, beyond those netip.Addr's methods tell.
var internalNets = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT (shared) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
// address they embed.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// internal returns what kind of internal address addr is, "" if it is
// none a drain may not reach.
func internal(addr netip.Addr) string {
	addr = addr.WithZone("")
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		if what := internal(netip.AddrFrom4([4]byte(b[12:]))); what != "" {
			return what + " behind NAT64"
		}
	}
	switch {
	case !addr.IsValid():
		return "not an address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address"
	case addr.IsPrivate():
		return "a private address"
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	for _, n := range internalNets {
		if n.prefix.Contains(addr) {
			return n.what
		}
	}
	return ""
}

// numericHost matches hosts that some resolvers read as IPv4 addresses
// although they are not dotted quads: 2130706433, 0x7f000001, 127.1,
// 0177.0.0.1.
var numericHost = regexp.MustCompile(`(?i)^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$`)

// checkDrainHost refuses a drain host that is, or is bound to resolve to,
// an address drains may not reach, unless allow permits it. A host name is
// checked again each time it is dialled, on the addresses it resolves to
// then: see drainControl.
func checkDrainHost(shown, host string, allow DrainAllow) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if what := internal(addr); what != "" && !allow.permits(addr) {
			return internalDrain(shown, "%s is %s", host, what)
		}
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		if !allow.permits(netip.MustParseAddr("127.0.0.1")) {
			return internalDrain(shown, "%s names this host (a loopback address)", host)
		}
		return nil
	}
	if numericHost.MatchString(host) {
		return invalidDrainURL(shown, "host %q is an IPv4 address in a form resolvers read in different ways: write it as a dotted quad such as 192.0.2.10", host)
	}
	return nil
}

// drainControl is the dialer's Control hook: it refuses, before the
// connection is made, an address drains may not reach, whatever name it
// was resolved from and whenever the name changed.
func drainControl(allow DrainAllow) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("drain address %q is not an IP address", address)
		}
		if what := internal(addr); what != "" && !allow.permits(addr) {
			return fmt.Errorf("refused to connect to %s: %s, which drains may not reach (an operator may allow it with --drain-allow)", addr, what)
		}
		return nil
	}
}

// internalDrain returns the error for a drain URL aimed inside.
func internalDrain(shown, format string, args ...any) error {
	return errdefs.Invalid("drain_address_internal", "drain URL %q is refused: %s, which drains may not reach; "+
		"use a public log server, or ask the operator to allow that network with --drain-allow", shown, fmt.Sprintf(format, args...))
}
