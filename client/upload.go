package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"

	"github.com/oneoffd/oneoffd/apitypes"
)

// File is a file to send with a one-off, to appear in /tmp/uploads.
type File struct {
	// Name is its name there.
	Name string
	// Size is its exact size in bytes.
	Size int64
	// Archive says it is a tar.gz of a directory, unpacked there.
	Archive bool
	// Open opens its content.
	Open func() (io.ReadCloser, error)
}

// CreateOneOffWithFiles starts a one-off of app with files, streaming them
// as a multipart request without holding them in memory; progress, when
// set, returns a writer that sees each file's bytes as they go. It checks
// that what arrived is what was sent.
func (c *Client) CreateOneOffWithFiles(ctx context.Context, app string, req apitypes.CreateOneOff, files []File, progress func(File) io.Writer) (apitypes.Created, error) {
	req.Files = make([]apitypes.Upload, len(files))
	for i, f := range files {
		req.Files[i] = apitypes.Upload{Name: f.Name, Size: f.Size, Archive: f.Archive}
	}
	pr, pw := io.Pipe()
	bw := bufio.NewWriterSize(pw, 1<<20) // large hand-overs to the sender
	mw := multipart.NewWriter(bw)
	sums := make([]string, len(files))
	go func() {
		err := writeMultipart(mw, req, files, sums, progress)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	resp, err := c.sendBody(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/oneoffs", pr, mw.FormDataContentType())
	pr.Close() // ends the writer, if the answer came before all was sent
	if err != nil {
		return apitypes.Created{}, err
	}
	defer resp.Body.Close()
	var out apitypes.Created
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("decode answer: %w", err)
	}
	if len(out.Uploads) != len(files) {
		return out, fmt.Errorf("the daemon received %d files, %d were sent", len(out.Uploads), len(files))
	}
	for i, u := range out.Uploads {
		if u.SHA256 != sums[i] {
			return out, fmt.Errorf("file %s arrived altered: sha256 %s sent, %s received", files[i].Name, sums[i], u.SHA256)
		}
	}
	return out, nil
}

func writeMultipart(mw *multipart.Writer, req apitypes.CreateOneOff, files []File, sums []string, progress func(File) io.Writer) error {
	part, err := mw.CreateFormField("request")
	if err != nil {
		return err
	}
	if err := json.NewEncoder(part).Encode(req); err != nil {
		return err
	}
	for i, f := range files {
		if err := func() error {
			// The name that counts is the one declared in the request part;
			// the part's own is only a hint, escaped to be a valid header.
			part, err := mw.CreateFormFile("file", url.PathEscape(f.Name))
			if err != nil {
				return err
			}
			rc, err := f.Open()
			if err != nil {
				return fmt.Errorf("open %s: %w", f.Name, err)
			}
			defer rc.Close()
			h := sha256.New()
			w := io.MultiWriter(part, h)
			if progress != nil {
				w = io.MultiWriter(part, h, progress(f))
			}
			n, err := io.CopyBuffer(w, rc, make([]byte, 1<<20))
			if err != nil {
				return fmt.Errorf("send %s: %w", f.Name, err)
			}
			if n != f.Size {
				return fmt.Errorf("%s changed while being sent: %d bytes, %d expected", f.Name, n, f.Size)
			}
			sums[i] = hex.EncodeToString(h.Sum(nil))
			return nil
		}(); err != nil {
			return err
		}
	}
	return mw.Close()
}
