package logs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

func TestValidateDrainURL(t *testing.T) {
	refused := []struct {
		url  string
		code string
		want string // in the message
	}{
		{"syslog://127.0.0.1:2375", "drain_address_internal", "127.0.0.1 is a loopback address"},
		{"syslog://127.8.9.10:514", "drain_address_internal", "loopback"},
		{"syslog://[::1]:22", "drain_address_internal", "::1 is a loopback address"},
		{"syslog://[::ffff:127.0.0.1]:514", "drain_address_internal", "loopback"},
		{"syslog://[::ffff:7f00:1]:514", "drain_address_internal", "loopback"},
		{"syslog://[64:ff9b::7f00:1]:514", "drain_address_internal", "loopback address behind NAT64"},
		{"syslog://localhost:514", "drain_address_internal", "names this host"},
		{"syslog://LocalHost.:514", "drain_address_internal", "names this host"},
		{"syslog://db.localhost:514", "drain_address_internal", "names this host"},
		{"syslog://169.254.169.254:80", "drain_address_internal", "169.254.169.254 is a link-local address"},
		{"syslog://[fe80::1]:514", "drain_address_internal", "link-local"},
		{"syslog://[fe80::1%25eth0]:514", "drain_address_internal", "link-local"},
		{"syslog://10.0.0.1:514", "drain_address_internal", "10.0.0.1 is a private address"},
		{"syslog://172.16.0.1:514", "drain_address_internal", "private"},
		{"syslog://172.31.255.255:514", "drain_address_internal", "private"},
		{"syslog+tls://192.168.1.10:6514", "drain_address_internal", "private"},
		{"syslog://[fc00::1]:514", "drain_address_internal", "private"},
		{"syslog://[fd12:3456::1]:514", "drain_address_internal", "private"},
		{"syslog://100.64.0.1:514", "drain_address_internal", "carrier-grade NAT"},
		{"syslog://100.127.255.254:514", "drain_address_internal", "carrier-grade NAT"},
		{"syslog://224.0.0.1:514", "drain_address_internal", "multicast"},
		{"syslog://[ff02::1]:514", "drain_address_internal", "multicast"},
		{"syslog://0.0.0.0:514", "drain_address_internal", "unspecified"},
		{"syslog://[::]:514", "drain_address_internal", "unspecified"},
		{"syslog://0.1.2.3:514", "drain_address_internal", "this network"},
		{"syslog://255.255.255.255:514", "drain_address_internal", "broadcast"},
		// Forms that some resolvers read as 127.0.0.1.
		{"syslog://2130706433:514", "invalid_drain_url", "dotted quad"},
		{"syslog://0x7f000001:514", "invalid_drain_url", "dotted quad"},
		{"syslog://0x7f.1:514", "invalid_drain_url", "dotted quad"},
		{"syslog://127.1:514", "invalid_drain_url", "dotted quad"},
		{"syslog://0177.0.0.1:514", "invalid_drain_url", "dotted quad"},
		{"syslog://127.0.0.1.:514", "invalid_drain_url", "dotted quad"},
	}
	for _, tt := range refused {
		t.Run(tt.url, func(t *testing.T) {
			err := ValidateDrainURL(tt.url, nil)
			e, ok := errdefs.As(err)
			if !ok || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want an ErrInvalid", err)
			}
			if e.Code != tt.code {
				t.Errorf("code %q, want %q", e.Code, tt.code)
			}
			if !strings.Contains(e.Message, tt.want) || !strings.Contains(e.Message, strconv.Quote(tt.url)) {
				t.Errorf("message %q, want it to name the URL and say %q", e.Message, tt.want)
			}
			if tt.code == "drain_address_internal" && !strings.Contains(e.Message, "--drain-allow") {
				t.Errorf("message %q does not say how an operator allows it", e.Message)
			}
		})
	}

	accepted := []string{
		"syslog+tls://logs.example.com:6514",
		"syslog://203.0.113.7:514",
		"syslog://172.32.0.1:514",
		"syslog://100.128.0.1:514",
		"syslog://[2001:db8::1]:514",
		"syslog://1.example:514", // a name, not a number
	}
	for _, u := range accepted {
		if err := ValidateDrainURL(u, nil); err != nil {
			t.Errorf("ValidateDrainURL(%q) = %v, want nil", u, err)
		}
	}

	t.Run("the operator's allow list", func(t *testing.T) {
		allow, err := ParseDrainAllow("127.0.0.0/8, 10.1.2.0/24,fd00:1::/64,169.254.169.254")
		if err != nil {
			t.Fatal(err)
		}
		for u, ok := range map[string]bool{
			"syslog://127.0.0.1:514":          true,
			"syslog://[::ffff:127.0.0.1]:514": true,
			"syslog://localhost:514":          true,
			"syslog://10.1.2.3:514":           true,
			"syslog://10.1.3.3:514":           false,
			"syslog://[fd00:1::5]:514":        true,
			"syslog://[fd00:2::5]:514":        false,
			"syslog://169.254.169.254:80":     true,
			"syslog://169.254.169.253:80":     false,
			"syslog://[::1]:514":              false,
		} {
			if err := ValidateDrainURL(u, allow); (err == nil) != ok {
				t.Errorf("ValidateDrainURL(%q) with %s = %v, want allowed %v", u, allow, err, ok)
			}
		}
	})
}

func TestParseDrainAllow(t *testing.T) {
	got, err := ParseDrainAllow(" 10.1.2.3/24 ,::1,,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	if want := "10.1.2.0/24,::1/128,fd00::/8"; got.String() != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "10.0.0.0/8,nope"} {
		if _, err := ParseDrainAllow(bad); err == nil {
			t.Errorf("ParseDrainAllow(%q) = nil error, want one", bad)
		}
	}
}

// listen returns a TCP listener on the loopback interface that counts the
// connections it accepts.
func listen(t *testing.T) (port string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := make(chan int, 1)
	n <- 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n <- <-n + 1
			defer c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, func() int { v := <-n; n <- v; return v }
}

func TestDrainControl(t *testing.T) {
	port, accepted := listen(t)
	t.Run("a name resolving to a loopback address is refused when dialled", func(t *testing.T) {
		d := net.Dialer{Control: drainControl(nil), Timeout: 5 * time.Second}
		_, err := d.Dial("tcp", net.JoinHostPort("localhost", port))
		if err == nil || !strings.Contains(err.Error(), "loopback address, which drains may not reach") {
			t.Fatalf("dial localhost: %v, want it refused", err)
		}
		if n := accepted(); n != 0 {
			t.Errorf("the listener accepted %d connections, want none", n)
		}
	})
	t.Run("allowed, it connects", func(t *testing.T) {
		d := net.Dialer{Control: drainControl(testAllow), Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", net.JoinHostPort("localhost", port))
		if err != nil {
			t.Fatalf("dial localhost allowed: %v", err)
		}
		c.Close()
	})
}

// TestSyslogDrain_Run_nameNowInternal is a drain whose name passed
// validation but resolves, when dialled, to a loopback address: it does
// not connect, and says why in its state.
func TestSyslogDrain_Run_nameNowInternal(t *testing.T) {
	port, accepted := listen(t)
	d, err := NewSyslogDrain(DrainConfig{URL: "syslog://logs.example.com:" + port, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// What DNS answers now for the name.
	d.url.host, d.url.addr = "localhost", net.JoinHostPort("localhost", port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	d.Enqueue(drainLines("inside", 1))
	s := waitDrainStats(t, d, "an error", func(s DrainStats) bool { return s.Errors > 0 })
	if s.State() != DrainFailing || s.FailingSince.IsZero() || !strings.Contains(s.LastError, "loopback address, which drains may not reach") {
		t.Errorf("stats %+v (state %s), want failing with the refusal as last error", s, s.State())
	}
	if s.Sent != 0 || s.Buffered != 1 {
		t.Errorf("stats %+v, want nothing sent and the line kept", s)
	}
	if n := accepted(); n != 0 {
		t.Errorf("the listener accepted %d connections, want none", n)
	}
}

// FuzzParseDrainURL checks that parsing and validating any drain URL never
// panics, that a URL accepted by default names no internal address, and
// that no error repeats the URL's password.
func FuzzParseDrainURL(f *testing.F) {
	for _, s := range []string{
		"syslog+tls://logs.example.com:6514", "syslog://127.0.0.1:2375", "syslog://[::1]:22",
		"syslog://169.254.169.254:80", "syslog://[::ffff:127.0.0.1]:514", "syslog://2130706433:514",
		"syslog://0x7f.0.0.1:514", "syslog+tls://user:hunter2@logs.example.com:6514", "syslog://[fe80::1%25eth0]:514",
		"syslog://localhost.:514", "http://x", "syslog://:514", "syslog://h:0", "syslog://[64:ff9b::a00:1]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, perr := parseDrainURL(raw)
		err := ValidateDrainURL(raw, nil)
		if perr != nil && err == nil {
			t.Fatalf("%q: parse failed (%v) but validation passed", raw, perr)
		}
		if err != nil {
			if _, ok := errdefs.As(err); !ok || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("%q: %v is not an ErrInvalid with a code", raw, err)
			}
			if pu, perr := url.Parse(raw); perr == nil && pu.User != nil {
				if ui := pu.User.String(); len(ui) >= 4 && strings.Count(raw, ui) == 1 && strings.Contains(err.Error(), ui+"@") {
					t.Fatalf("%q: error %q shows the credentials", raw, err)
				}
			}
			return
		}
		if a, aerr := netip.ParseAddr(u.host); aerr == nil && internal(a) != "" {
			t.Fatalf("%q: accepted, but its host %s is %s", raw, a, internal(a))
		}
		if h, _, serr := net.SplitHostPort(u.addr); serr != nil || h != u.host {
			t.Fatalf("%q: dials %q, not its host %q", raw, u.addr, u.host)
		}
	})
}
