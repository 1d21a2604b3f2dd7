// Package version says which build of oneoffd runs: the version and
// commit stamped at build time, or else what the Go toolchain recorded.
package version

import (
	"runtime/debug"
	"sync"
)

// Stamped at build time with
// -ldflags "-X github.com/oneoffd/oneoffd/internal/version.version=v1.2.3
// -X github.com/oneoffd/oneoffd/internal/version.commit=abc1234".
var (
	version string
	commit  string
)

// API is the version of the HTTP API the daemon serves and the CLI
// speaks, the number in /v1.
const API = 1

var resolve = sync.OnceFunc(func() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	if commit == "" {
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(commit) > 12 {
			commit = commit[:12]
		}
		if commit != "" && modified {
			commit += "-dirty"
		}
	}
})

// Version is the build's version, "dev" when none was stamped.
func Version() string {
	resolve()
	if version == "" {
		return "dev"
	}
	return version
}

// Commit is the commit the build was made from, "unknown" when not known.
func Commit() string {
	resolve()
	if commit == "" {
		return "unknown"
	}
	return commit
}

// String is the version and the commit, as the binaries print them.
func String() string { return Version() + " (commit " + Commit() + ")" }
