// Package errdefs defines the classes of error that cross package
// boundaries, so that the API can map them to status codes in one place and
// the CLI can turn them into a clear sentence.
package errdefs

import (
	"errors"
	"fmt"
)

// The error classes. Test for them with errors.Is.
var (
	// ErrInvalid is bad input: a malformed request, a bad name or value.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound is a reference to something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is a request that the target's current state forbids.
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized is a missing or wrong credential.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTooLarge is a request over a configured size limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable is a dependency that does not answer, such as the engine.
	ErrUnavailable = errors.New("unavailable")
	// ErrQuota is a request over a configured quota, such as the one-offs
	// an app may run at once: it may succeed once others have ended.
	ErrQuota = errors.New("over quota")
)

// Error is an error a person can act on: a class, a stable machine-readable
// code and a message. It may be wrapped with context like any other error.
type Error struct {
	Class   error  // one of the Err* classes above
	Code    string // stable, snake_case, e.g. "app_not_found"
	Message string // one sentence for a person, saying what to do
	Err     error  // the underlying cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap lets errors.Is match both the class and the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Class, e.Err}
	}
	return []error{e.Class}
}

func newf(class error, code, format string, args ...any) error {
	return &Error{Class: class, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an ErrInvalid error with a code and a message.
func Invalid(code, format string, args ...any) error {
	return newf(ErrInvalid, code, format, args...)
}

// NotFound returns an ErrNotFound error with a code and a message.
func NotFound(code, format string, args ...any) error {
	return newf(ErrNotFound, code, format, args...)
}

// Conflict returns an ErrConflict error with a code and a message.
func Conflict(code, format string, args ...any) error {
	return newf(ErrConflict, code, format, args...)
}

// Unauthorized returns an ErrUnauthorized error with a code and a message.
func Unauthorized(code, format string, args ...any) error {
	return newf(ErrUnauthorized, code, format, args...)
}

// TooLarge returns an ErrTooLarge error with a code and a message.
func TooLarge(code, format string, args ...any) error {
	return newf(ErrTooLarge, code, format, args...)
}

// Quota returns an ErrQuota error with a code and a message.
func Quota(code, format string, args ...any) error {
	return newf(ErrQuota, code, format, args...)
}

// Unavailable returns an ErrUnavailable error wrapping cause.
func Unavailable(code string, cause error, format string, args ...any) error {
	return &Error{Class: ErrUnavailable, Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// As returns the outermost *Error in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
