// Package apitypes holds the bodies of oneoffd's HTTP API: the requests a
// client sends and the answers it reads, with the headers both sides set.
// It has no server code, so that a client (the oneoff CLI among them)
// links none: the daemon's own types encode to the same JSON, which its
// tests check against docs/openapi.yaml and against these.
package apitypes

// VersionHeader carries, in every answer, the API version the daemon
// speaks.
const VersionHeader = "Oneoffd-Api-Version"

// RequesterHeader names the user a platform acts for, for the audit trail.
const RequesterHeader = "Oneoff-Requester"

// StopGraceHeader carries, in the answer about a one-off, the time a stop
// leaves it between SIGTERM and SIGKILL, as a Go duration ("10s").
const StopGraceHeader = "Oneoff-Stop-Grace"

// The bounds of a list route's answer: DefaultListLimit items, newest
// first, unless the request's limit asks for another number, at most
// MaxListLimit. A larger limit is refused, with the maximum in the
// message, rather than silently cut.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable code and a sentence for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
