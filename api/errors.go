package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/errdefs"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody = apitypes.ErrorBody

// ErrorDetail says what went wrong: a stable code and a sentence for people.
type ErrorDetail = apitypes.ErrorDetail

// status maps an error's class to an HTTP status, in one place.
func status(err error) int {
	switch {
	case errors.Is(err, errdefs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errdefs.ErrQuota):
		return http.StatusTooManyRequests
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// Detail turns an error into what a client is told: the message of the
// outermost errdefs.Error, or a generic one for unexpected failures, which
// are logged instead.
func Detail(err error) ErrorDetail {
	if e, ok := errdefs.As(err); ok {
		return ErrorDetail{Code: e.Code, Message: e.Message}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrorDetail{Code: "timeout", Message: "the operation timed out: the engine may be overloaded; retry"}
	}
	return ErrorDetail{Code: "internal", Message: "internal error: see the daemon's log"}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	st := status(err)
	if st >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	}
	writeJSON(w, st, ErrorBody{Error: Detail(err)})
}
