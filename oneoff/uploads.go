package oneoff

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
)

// UploadDir is where uploaded files appear in the container.
const UploadDir = "/tmp/uploads"

// The upload limits when none are configured.
const (
	DefaultMaxUploadFile  = 100 << 20
	DefaultMaxUploadTotal = 512 << 20
	maxUploads            = 100
	maxArchiveEntries     = 100000
)

// Upload is a file a request sends, to appear in UploadDir before the
// command starts.
type Upload struct {
	// Name is the name the client gave; the file gets it, made safe.
	Name string `json:"name"`
	// Size is the number of bytes that will be sent.
	Size int64 `json:"size"`
	// Archive says the content is a tar.gz of a directory, to unpack into
	// UploadDir/Name.
	Archive bool `json:"archive,omitempty"`
}

// Uploaded is where an upload went and what arrived.
type Uploaded struct {
	Name string `json:"name"`
	// Path is where it is in the container.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is the hash of the bytes received, as sent (the archive for
	// a directory), so that the sender can check them.
	SHA256  string `json:"sha256"`
	Archive bool   `json:"archive,omitempty"`
}

// UploadReader yields the uploads' contents, in the order of
// Request.Uploads, then io.EOF.
type UploadReader interface {
	Next() (io.Reader, error)
}

// checkUploads checks the uploads against the limits before any byte is
// read, and gives each a safe name no other upload has.
func (m *Manager) checkUploads(uploads []Upload) ([]Uploaded, error) {
	if len(uploads) > maxUploads {
		return nil, errdefs.Invalid("too_many_uploads", "%d files is over the limit of %d a one-off", len(uploads), maxUploads)
	}
	var total int64
	taken := map[string]bool{}
	out := make([]Uploaded, len(uploads))
	for i, u := range uploads {
		if u.Size < 0 {
			return nil, errdefs.Invalid("invalid_upload", "file %q has a negative size", u.Name)
		}
		if u.Size > m.cfg.MaxUploadFile {
			return nil, errdefs.TooLarge("upload_too_large", "file %q is %s, over the limit of %s a file",
				u.Name, humanize.IBytes(uint64(u.Size)), humanize.IBytes(uint64(m.cfg.MaxUploadFile)))
		}
		total += u.Size
		if total > m.cfg.MaxUploadTotal {
			return nil, errdefs.TooLarge("uploads_too_large", "the files add up to over %s, the limit a one-off",
				humanize.IBytes(uint64(m.cfg.MaxUploadTotal)))
		}
		name := uniqueName(safeName(u.Name), taken)
		out[i] = Uploaded{Name: name, Path: UploadDir + "/" + name, Size: u.Size, Archive: u.Archive}
	}
	return out, nil
}

// safeName reduces a client's file name to one safe in UploadDir: its last
// element, without control characters, at most 255 bytes.
func safeName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(path.Clean("/" + name))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '_'
		}
		return r
	}, name)
	if name == "/" || name == "." || name == ".." || name == "" {
		name = "upload"
	}
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// uniqueName returns name, or name-2, name-3... before its extension,
// whichever is not taken yet, and takes it.
func uniqueName(name string, taken map[string]bool) string {
	ext := path.Ext(name)
	if ext == name {
		ext = "" // a dotfile such as .env has no extension
	}
	stem := strings.TrimSuffix(name, ext)
	candidate := name
	for i := 2; taken[candidate]; i++ {
		candidate = stem + "-" + strconv.Itoa(i) + ext
	}
	taken[candidate] = true
	return candidate
}

// copyUploads streams the uploads into the container's UploadDir, each
// checked to be exactly its declared size, and fills in their hashes. On
// error the container holds a part of them: the caller discards it.
func (m *Manager) copyUploads(ctx context.Context, cid string, up []Uploaded, src UploadReader) error {
	if len(up) == 0 {
		return nil
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		// Large writes into the pipe: each one is a hand-over between
		// goroutines.
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := writeUploads(bw, up, src, m.cfg.MaxUploadTotal)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		written <- err
	}()
	err := m.rt.CopyTo(ctx, cid, "/", pr)
	pr.CloseWithError(errors.New("the copy into the container ended"))
	if werr := <-written; werr != nil {
		return werr // the cause, rather than the copy's view of it
	}
	if err != nil {
		return fmt.Errorf("copy uploads into the container: %w", err)
	}
	return nil
}

// writeUploads writes the tar stream of the uploads under tmp/uploads.
func writeUploads(w io.Writer, up []Uploaded, src UploadReader, maxUnpacked int64) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: now})
	}
	// The directory is writable by whoever the image runs as.
	if err := dir("tmp/", 0o1777); err != nil {
		return err
	}
	if err := dir("tmp/uploads/", 0o1777); err != nil {
		return err
	}
	unpacked := int64(0)
	for i := range up {
		u := &up[i]
		r, err := src.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errdefs.Invalid("upload_missing", "the request declared %d files but sent %d", len(up), i)
			}
			return fmt.Errorf("read upload %q: %w", u.Name, err)
		}
		h := sha256.New()
		body := &countingReader{r: io.TeeReader(io.LimitReader(r, u.Size), h)}
		if u.Archive {
			err = unpack(tw, body, "tmp/uploads/"+u.Name+"/", now, &unpacked, maxUnpacked)
		} else {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "tmp/uploads/" + u.Name, Mode: 0o666, Size: u.Size, ModTime: now})
			if err == nil {
				_, err = io.CopyN(tw, body, u.Size)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && body.n != u.Size) {
			return errdefs.Invalid("upload_incomplete", "file %q ended after %d of the %d bytes declared", u.Name, body.n, u.Size)
		}
		if err != nil {
			return err
		}
		// More bytes than declared is as wrong as fewer.
		var extra [1]byte
		if n, _ := io.ReadFull(r, extra[:]); n > 0 {
			return errdefs.Invalid("upload_size_mismatch", "file %q is longer than the %d bytes declared", u.Name, u.Size)
		}
		u.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	if _, err := src.Next(); !errors.Is(err, io.EOF) {
		return errdefs.Invalid("upload_unexpected", "the request sent more files than the %d it declared", len(up))
	}
	return tw.Close()
}

// countingReader counts what it reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
