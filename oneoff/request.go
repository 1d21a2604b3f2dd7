package oneoff

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Command is what a one-off runs: either a shell line, run through
// /bin/sh -c, or an argument list, run as is.
type Command struct {
	Line string
	Args []string
}

// UnmarshalJSON accepts a string (a shell line) or an array of strings.
func (c *Command) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*c = Command{}
		return json.Unmarshal(b, &c.Line)
	}
	*c = Command{}
	return json.Unmarshal(b, &c.Args)
}

// MarshalJSON writes the form the command was given in.
func (c Command) MarshalJSON() ([]byte, error) {
	if c.Args != nil {
		return json.Marshal(c.Args)
	}
	return json.Marshal(c.Line)
}

// IsZero reports whether no command was given.
func (c Command) IsZero() bool { return strings.TrimSpace(c.Line) == "" && len(c.Args) == 0 }

// Request is what a client asks to run.
type Request struct {
	Command Command
	// Type names a Procfile process type whose command runs, with
	// Command's words appended to it.
	Type string
	Env  map[string]string
	TTY  bool
	// Window is the terminal's size when TTY is set.
	Window TermSize
	// Size names the resource limits, from the configured table; empty
	// means the default size.
	Size string
	// Term is the user's TERM, passed to the container with a TTY.
	Term string
	// Requester is who asked, as the platform identifies its user.
	Requester string
	// NamePrefix, when set, starts the one-off's name instead of
	// "one-off" (e.g. "cron-cleanup" for cron-cleanup-4821).
	NamePrefix string
	// Detached starts the one-off at once, its output going to the app's
	// log instead of a terminal.
	Detached bool
	// TTL is how long a detached one-off may run at most; zero means the
	// configured maximum.
	TTL time.Duration
	// Uploads are files to put in UploadDir before the command starts;
	// UploadData yields their contents, in the same order.
	Uploads    []Upload
	UploadData UploadReader
}

// argv resolves what the container runs.
func (r Request) argv(rel deploy.Release) ([]string, error) {
	if r.Type == "" {
		switch {
		case len(r.Args()) > 0:
			return r.Args(), nil
		case strings.TrimSpace(r.Command.Line) != "":
			return []string{"/bin/sh", "-c", r.Command.Line}, nil
		}
		return nil, errdefs.Invalid("command_required", "a one-off needs a command (for example \"bash\") or a process type")
	}
	line, ok := rel.Processes[r.Type]
	if !ok {
		types := make([]string, 0, len(rel.Processes))
		for t := range rel.Processes {
			types = append(types, t)
		}
		sort.Strings(types)
		if len(types) == 0 {
			return nil, errdefs.Invalid("unknown_process_type", "process type %q is unknown: app %q has no Procfile process types", r.Type, rel.App)
		}
		return nil, errdefs.Invalid("unknown_process_type", "process type %q is unknown: app %q has %s", r.Type, rel.App, strings.Join(types, ", "))
	}
	switch {
	case len(r.Command.Args) > 0:
		quoted := make([]string, len(r.Command.Args))
		for i, a := range r.Command.Args {
			quoted[i] = shellQuote(a)
		}
		line += " " + strings.Join(quoted, " ")
	case strings.TrimSpace(r.Command.Line) != "":
		line += " " + r.Command.Line
	}
	return []string{"/bin/sh", "-c", line}, nil
}

// Args returns the argument list form of the command, if given that way.
func (r Request) Args() []string { return r.Command.Args }

// env merges the release's variables with the request's, which win.
func (r Request) env(rel deploy.Release) []string {
	merged := make(map[string]string, len(rel.Env)+len(r.Env)+1)
	if r.TTY && r.Term != "" {
		merged["TERM"] = r.Term
	}
	for k, v := range rel.Env {
		merged[k] = v
	}
	for k, v := range r.Env {
		merged[k] = v
	}
	out := make([]string, 0, len(merged))
	for k, v := range merged {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (r Request) envNames() []string {
	if len(r.Env) == 0 {
		return nil
	}
	names := make([]string, 0, len(r.Env))
	for k := range r.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// shellQuote quotes s for /bin/sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
