package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"

	"github.com/oneoffd/oneoffd/errdefs"
)

// decodeMultipart reads a one-off request sent with files: a "request"
// part holding the JSON body, then a "file" part for each file it
// declares. It returns the reader of those files, which the one-off's
// creation streams into the container without holding them.
func (s *Server) decodeMultipart(w http.ResponseWriter, r *http.Request, boundary string, body *CreateOneOff) (*partReader, error) {
	if boundary == "" {
		return nil, errdefs.Invalid("invalid_multipart", "the multipart/form-data content type has no boundary")
	}
	limit := s.oneoffs.Config().MaxUploadTotal + MaxJSONBody
	// Read the body in large blocks: the multipart reader's own buffer is
	// small.
	mr := multipart.NewReader(bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, limit), 1<<20), boundary)
	part, err := mr.NextPart()
	if err != nil {
		return nil, errdefs.Invalid("invalid_multipart", "the request's first part must be \"request\", the JSON body: %v", err)
	}
	if part.FormName() != "request" {
		return nil, errdefs.Invalid("invalid_multipart", "the request's first part must be \"request\", the JSON body, not %q", part.FormName())
	}
	dec := json.NewDecoder(io.LimitReader(part, MaxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(body); err != nil {
		return nil, errdefs.Invalid("invalid_json", "the request part is not valid JSON for this route: %v", err)
	}
	return &partReader{mr: mr}, nil
}

// partReader yields the "file" parts of a multipart request.
type partReader struct {
	mr *multipart.Reader
	n  int
}

// Next returns the next file part, or io.EOF after the last.
func (p *partReader) Next() (io.Reader, error) {
	part, err := p.mr.NextPart()
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	case errors.As(err, &tooBig):
		return nil, errdefs.TooLarge("uploads_too_large", "the request is over its %d-byte limit", tooBig.Limit)
	case err != nil:
		return nil, errdefs.Invalid("invalid_multipart", "read file part %d: %v", p.n+1, err)
	}
	p.n++
	if part.FormName() != "file" {
		return nil, errdefs.Invalid("invalid_multipart", "part %d is %q: after \"request\", every part must be a \"file\"", p.n+1, part.FormName())
	}
	return part, nil
}
