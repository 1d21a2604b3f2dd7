package swarm

import (
	"archive/tar"
	"bytes"
	"strings"
	"time"
)

// The files through which a one-off's holder is told to run its command.
const (
	// runDir is where they are, in the container.
	runDir = "/tmp/.oneoffd"
	// cmdFile holds the detached command, as a shell script.
	cmdFile = runDir + "/cmd"
	// goFile appears once cmdFile is complete: it releases the holder.
	goFile = runDir + "/go"
	// pidFile holds the pid of an attached command, for signals.
	pidFile = runDir + "/pid"
)

// holderScript is the command of every one-off's service. A service's
// container starts at once, while a one-off's command must not run before
// its files are in place and, attached, before its terminal is connected:
// the holder waits, polling quickly for a while and then slowly, until the
// go file appears, and then becomes the detached command (exec), which so
// is the container's own process, with the container's log, exit code and
// signals. An attached command runs as an exec beside the holder instead,
// and the holder just waits until the service is removed. It needs only a
// POSIX sh; a sleep without fractions (it fails at once) makes it poll
// every second.
const holderScript = `i=0
while [ ! -e ` + goFile + ` ]; do
  if [ "$i" -lt 500 ]; then i=$((i+1)); sleep 0.02 2>/dev/null || sleep 1; else sleep 1; fi
done
exec /bin/sh ` + cmdFile

// holderCommand is the service's command: the image's entrypoint is
// replaced by it, and the one-off's own command, kept as the service's
// arguments, is run later by Start.
var holderCommand = []string{"/bin/sh", "-c", holderScript}

// attachedCommand wraps an attached command's argv so that its pid is
// written where Signal finds it.
func attachedCommand(argv []string) []string {
	return append([]string{"/bin/sh", "-c", `{ [ -d ` + runDir + ` ] || mkdir -p ` + runDir + `; } && echo $$ >` + pidFile + ` && exec "$@"`, "sh"}, argv...)
}

// shellQuote quotes s for a POSIX shell, as one word.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runScript is the script that the holder of a detached one-off runs:
// argv, exec'd.
func runScript(argv []string) string {
	var b strings.Builder
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	b.WriteByte('\n')
	return b.String()
}

// runArchive is a tar stream, to be unpacked in /tmp, that holds the run
// script and then the go file: unpacked in order, the go file appears only
// once the script is complete.
func runArchive(argv []string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	script := []byte(runScript(argv))
	dir := strings.TrimPrefix(runDir, "/tmp/")
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: now})
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + "/cmd", Mode: 0o644, Size: int64(len(script)), ModTime: now})
	_, _ = tw.Write(script)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + "/go", Mode: 0o644, ModTime: now})
	_ = tw.Close()
	return buf.Bytes()
}

// commandLine is the argv a one-off runs: the image's entrypoint, then the
// one-off's command, or the image's command when it has none.
func commandLine(entrypoint, imageCmd, cmd []string) []string {
	if len(cmd) == 0 {
		cmd = imageCmd
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

// maxServiceName is the longest name Swarm accepts for a service.
const maxServiceName = 63

// serviceName turns a container name into a valid service name: letters,
// digits, '-' and '_', beginning and ending with a letter or digit, at
// most 63 long. A name too long keeps its end, where a one-off's name
// carries its unique id.
func serviceName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-_")
	if len(s) > maxServiceName {
		s = strings.TrimLeft(s[len(s)-maxServiceName:], "-_")
	}
	return s
}
