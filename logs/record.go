package logs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/oneoffd/oneoffd/errdefs"
)

// A record is how the Store keeps one line in a segment file: a JSON
// object on a line of its own, its fields always in this order,
//
//	{"t":"2024-05-01T12:00:00.123456789Z","src":"one-off-4821","s":"o","m":"text"}
//
// t is the line's time in RFC 3339 with nanoseconds, in UTC, so that it
// round-trips exactly; src its source; s its stream, "o" for stdout and "e"
// for stderr; m its text. A text that is not valid UTF-8 is kept as "b",
// its bytes in standard base64, instead of "m", so that every text,
// whatever its bytes, round-trips exactly. The app is the directory the
// file is in.
//
// JSON escapes every newline inside a string, so a record's only newline is
// the one that ends it, and a quote inside a string is always escaped, which
// lets sourceFilter match a source without decoding the record.
const (
	recTime        = `{"t":"`
	recSource      = `","src":`
	recStream      = `,"s":"`
	recTextField   = `","m":`
	recBase64Field = `","b":"`
	recEnd         = "}\n"
)

// The stream codes of a record.
const (
	recStdout = 'o'
	recStderr = 'e'
)

// errBadRecord is a segment line that is not a record.
var errBadRecord = errors.New("malformed log record")

// checkRecordLine reports whether l can be stored as a record.
func checkRecordLine(l *Line) error {
	if l.Stream != Stdout && l.Stream != Stderr {
		return errdefs.Invalid("invalid_log_line", "log line stream %q is invalid: use %q or %q", l.Stream, Stdout, Stderr)
	}
	if !utf8.ValidString(l.Source) {
		return errdefs.Invalid("invalid_log_line", "log line source %q is not valid UTF-8", l.Source)
	}
	if y := l.Time.UTC().Year(); y < 0 || y > 9999 {
		return errdefs.Invalid("invalid_log_line", "log line time %s is out of range: years 0 to 9999 only", l.Time)
	}
	return nil
}

// appendRecord appends l, checked by checkRecordLine, to b as a record
// with its newline.
func appendRecord(b []byte, l *Line) []byte {
	b = append(b, recTime...)
	b = l.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, recSource...)
	b = appendJSONString(b, l.Source)
	b = append(b, recStream...)
	if l.Stream == Stderr {
		b = append(b, recStderr)
	} else {
		b = append(b, recStdout)
	}
	if utf8.ValidString(l.Text) {
		b = append(b, recTextField...)
		b = appendJSONString(b, l.Text)
	} else {
		b = append(b, recBase64Field...)
		b = base64.StdEncoding.AppendEncode(b, []byte(l.Text))
		b = append(b, '"')
	}
	return append(b, recEnd...)
}

// appendJSONString appends s, valid UTF-8, to b as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseRecord decodes rec, a record without its newline, as a line of app.
func parseRecord(rec []byte, app string) (Line, error) {
	rest, ok := bytes.CutPrefix(rec, []byte(recTime))
	if !ok {
		return Line{}, errBadRecord
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return Line{}, errBadRecord
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:i]))
	if err != nil {
		return Line{}, errBadRecord
	}
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(recSource)); !ok {
		return Line{}, errBadRecord
	}
	src, rest, err := cutJSONString(rest)
	if err != nil {
		return Line{}, err
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(recStream)); !ok || len(rest) < 1 {
		return Line{}, errBadRecord
	}
	l := Line{Time: t, App: app, Source: src}
	switch rest[0] {
	case recStdout:
		l.Stream = Stdout
	case recStderr:
		l.Stream = Stderr
	default:
		return Line{}, errBadRecord
	}
	rest = rest[1:]
	if r, ok := bytes.CutPrefix(rest, []byte(recTextField)); ok {
		if l.Text, rest, err = cutJSONString(r); err != nil {
			return Line{}, err
		}
	} else if r, ok := bytes.CutPrefix(rest, []byte(recBase64Field)); ok {
		i := bytes.IndexByte(r, '"')
		if i < 0 {
			return Line{}, errBadRecord
		}
		text, err := base64.StdEncoding.AppendDecode(nil, r[:i])
		if err != nil {
			return Line{}, errBadRecord
		}
		l.Text, rest = string(text), r[i+1:]
	} else {
		return Line{}, errBadRecord
	}
	if len(rest) != 1 || rest[0] != '}' {
		return Line{}, errBadRecord
	}
	return l, nil
}

// cutJSONString decodes the JSON string at the start of b and returns it
// and what follows it.
func cutJSONString(b []byte) (string, []byte, error) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, errBadRecord
	}
	escaped := false
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return string(b[1:i]), b[i+1:], nil
			}
			var s string
			if err := json.Unmarshal(b[:i+1], &s); err != nil {
				return "", nil, errBadRecord
			}
			return s, b[i+1:], nil
		}
	}
	return "", nil, errBadRecord
}

// sourceFilter picks the records of one source, or of all.
type sourceFilter struct {
	source string
	needle []byte // the record's source field, as appendRecord writes it; nil for all
}

// newSourceFilter returns a filter for source's records; all of them when
// all is true.
func newSourceFilter(source string, all bool) sourceFilter {
	if all {
		return sourceFilter{}
	}
	needle := appendJSONString([]byte(recSource), source)
	return sourceFilter{source: source, needle: append(needle, recStream...)}
}

// maybe reports whether rec can be one of the filter's records; match
// gives the answer for sure. A quote is always escaped inside a JSON
// string, so the needle, which holds unescaped quotes, matches only the
// record's own source field.
func (f sourceFilter) maybe(rec []byte) bool {
	return f.needle == nil || bytes.Contains(rec, f.needle)
}

// match reports whether l is one of the filter's lines.
func (f sourceFilter) match(l *Line) bool {
	return f.needle == nil || l.Source == f.source
}
