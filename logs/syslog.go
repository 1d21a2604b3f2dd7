package logs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/oneoffd/oneoffd/errdefs"
)

// The syslog wire format: RFC 5424 messages, each framed by octet counting
// (RFC 6587 §3.4.1): the message's length in bytes, a space, the message.

// Priority parts: every line is a user-level message, stdout at severity
// info and stderr at severity err.
const (
	syslogFacilityUser = 1
	syslogSeverityErr  = 3
	syslogSeverityInfo = 6
)

// Header field limits from RFC 5424 §6, in (ASCII) characters.
const (
	syslogMaxHostname = 255
	syslogMaxAppName  = 48
	syslogMaxProcID   = 128
	syslogMaxMsgID    = 32
)

// syslogNil stands for an empty header field.
const syslogNil = "-"

// syslogTimeLayout is RFC 3339 with microseconds, the most RFC 5424 allows.
const syslogTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendSyslogFrame appends l to b as one octet-counted RFC 5424 message
// from hostname and returns the extended buffer.
func appendSyslogFrame(b []byte, hostname string, l Line) []byte {
	// The length prefix comes first but counts the message's bytes, so the
	// message is formatted in place and the prefix put in front after.
	start := len(b)
	b = appendSyslogMessage(b, hostname, l)
	n := len(b) - start
	var prefix [24]byte
	p := strconv.AppendInt(prefix[:0], int64(n), 10)
	p = append(p, ' ')
	b = append(b, p...) // grow by len(p)
	copy(b[start+len(p):], b[start:start+n])
	copy(b[start:], p)
	return b
}

// appendSyslogMessage appends l as an RFC 5424 message:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
//
// APP-NAME is the app, PROCID the line's source (the one-off), MSGID its
// stream, with no structured data. Header fields keep only printable
// US-ASCII, other characters becoming '_', are cut to their RFC length, and
// are "-" when empty. MSG is the line's text exactly as it is, newlines and
// all: octet counting needs no escaping (rsyslog, for one, shows control
// characters as #ooo on receipt).
func appendSyslogMessage(b []byte, hostname string, l Line) []byte {
	severity := syslogSeverityInfo
	if l.Stream == Stderr {
		severity = syslogSeverityErr
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, syslogFacilityUser*8+int64(severity), 10)
	b = append(b, ">1 "...)
	if l.Time.IsZero() {
		b = append(b, syslogNil...)
	} else {
		b = l.Time.UTC().AppendFormat(b, syslogTimeLayout)
	}
	b = append(b, ' ')
	b = appendHeaderField(b, hostname, syslogMaxHostname)
	b = append(b, ' ')
	b = appendHeaderField(b, l.App, syslogMaxAppName)
	b = append(b, ' ')
	b = appendHeaderField(b, l.Source, syslogMaxProcID)
	b = append(b, ' ')
	b = appendHeaderField(b, l.Stream, syslogMaxMsgID)
	b = append(b, " - "...)
	return append(b, l.Text...)
}

// appendHeaderField appends s as a header field of at most max characters,
// each printable US-ASCII (33 to 126); anything else, such as a space or a
// non-ASCII letter, becomes '_'. An empty field is the nil value.
func appendHeaderField(b []byte, s string, max int) []byte {
	if s == "" {
		return append(b, syslogNil...)
	}
	n := 0
	for len(s) > 0 && n < max {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if r < 33 || r > 126 {
			r = '_'
		}
		b = append(b, byte(r))
		n++
	}
	return b
}

// drainURL is a parsed, validated drain URL.
type drainURL struct {
	tls      bool   // syslog+tls, else plain TCP
	host     string // without the port, for the TLS server name
	addr     string // host:port to dial
	redacted string // the URL without credentials, for logs and stats
}

// hostName matches a DNS host name: dot-separated labels of letters, digits,
// hyphens and underscores, a hyphen neither first nor last.
var hostName = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$`)

// drainURLForms says what a drain URL may look like.
const drainURLForms = "use syslog+tls://host:port, syslog+tcp://host:port or syslog://host:port (TCP)"

// ValidateDrainURL reports whether raw names a drain this package can
// forward to, with an errdefs.ErrInvalid error saying what is wrong: a URL
// of a form it does not speak, or aimed at an internal address (loopback,
// link-local, private, multicast, unspecified...) that allow does not
// permit.
func ValidateDrainURL(raw string, allow DrainAllow) error {
	u, err := parseDrainURL(raw)
	if err != nil {
		return err
	}
	return checkDrainHost(u.redacted, u.host, allow)
}

// parseDrainURL parses and validates a drain URL's form; its errors are of
// class errdefs.ErrInvalid and never repeat credentials the URL may hold.
func parseDrainURL(raw string) (drainURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, credentials and all: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return drainURL{}, invalidDrainURL("", "%v", err)
	}
	u.User = nil
	shown := u.String()
	var d drainURL
	switch u.Scheme {
	case "syslog+tls":
		d.tls = true
	case "syslog+tcp", "syslog":
	case "":
		return drainURL{}, invalidDrainURL(shown, "no scheme")
	default:
		return drainURL{}, invalidDrainURL(shown, "unsupported scheme %q", u.Scheme)
	}
	switch {
	case u.Opaque != "":
		return drainURL{}, invalidDrainURL(shown, "no host")
	case u.Hostname() == "":
		return drainURL{}, invalidDrainURL(shown, "no host")
	case u.Port() == "":
		return drainURL{}, invalidDrainURL(shown, "no port")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return drainURL{}, invalidDrainURL(shown, "only a host and a port may follow the scheme")
	}
	if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
		return drainURL{}, invalidDrainURL(shown, "port %q is not a number from 1 to 65535", u.Port())
	}
	d.host = u.Hostname()
	if _, err := netip.ParseAddr(d.host); err != nil && (len(d.host) > 253 || !hostName.MatchString(d.host)) {
		return drainURL{}, invalidDrainURL(shown, "host %q is neither an IP address nor a host name", d.host)
	}
	d.addr = net.JoinHostPort(d.host, u.Port())
	d.redacted = shown
	return d, nil
}

// invalidDrainURL returns the error for a drain URL that cannot be used.
func invalidDrainURL(shown, format string, args ...any) error {
	what := "drain URL"
	if shown != "" {
		what = fmt.Sprintf("drain URL %q", shown)
	}
	return errdefs.Invalid("invalid_drain_url", "%s is invalid: %s; %s",
		what, fmt.Sprintf(format, args...), drainURLForms)
}
