package deploy

import (
	"regexp"
	"strings"

	"github.com/oneoffd/oneoffd/errdefs"
)

// processName is what Heroku accepts as a process type name.
var processName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ParseProcfile parses a Procfile into its process types, mapping each name
// to its command.
//
// Each line is "name: command". Blank lines and lines whose first non-space
// character is "#" are ignored, and CRLF line endings are accepted. The
// command is everything after the first colon, trimmed, so it may contain
// colons itself. A malformed line, a bad name, an empty command or a name
// defined twice is an errdefs.ErrInvalid error that gives the line number.
// Empty text yields an empty map.
func ParseProcfile(text string) (map[string]string, error) {
	procs := make(map[string]string)
	defined := make(map[string]int) // name -> line it was defined on
	text = strings.TrimPrefix(text, "\ufeff")
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		if !ok {
			return nil, errdefs.Invalid("invalid_procfile",
				"Procfile line %d: %q has no \"name: command\" form", n, line)
		}
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !processName.MatchString(name) {
			return nil, errdefs.Invalid("invalid_procfile",
				"Procfile line %d: process type name %q is invalid: use letters, digits, underscores and dashes", n, name)
		}
		if cmd == "" {
			return nil, errdefs.Invalid("invalid_procfile",
				"Procfile line %d: process type %q has an empty command", n, name)
		}
		if first, dup := defined[name]; dup {
			return nil, errdefs.Invalid("invalid_procfile",
				"Procfile line %d: process type %q is already defined on line %d", n, name, first)
		}
		defined[name] = n
		procs[name] = cmd
	}
	return procs, nil
}
