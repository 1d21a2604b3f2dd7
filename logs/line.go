// Package logs is the aggregated log of each app: an embedded store that
// keeps every app's recent lines on disk and lets clients read and follow
// them, and drains that forward them to syslog servers.
package logs

import "github.com/oneoffd/oneoffd/oneoff"

// Line is one line of an app's log.
type Line = oneoff.LogLine

// The streams a line comes from.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)
