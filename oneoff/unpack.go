package oneoff

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
)

// unpack copies a tar.gz's regular files, directories, symbolic links and
// hard links under prefix, so that nothing it holds can be written outside
// the upload's directory once the engine extracts it:
//
//   - entry paths are cleaned so that none leaves the directory;
//   - a symbolic link's target must be relative and stay inside, and may not
//     step up ("..") out of another link;
//   - no entry may go through, or replace, a symbolic link;
//   - a hard link must point at a regular file the archive held before;
//   - devices and fifos are refused.
//
// Every decompressed byte counts against max, shared by the request's
// archives through unpacked: the entries' content, skipped or not, the tar
// headers and whatever follows the tar's end in the gzip stream. A small
// gzip of zeros cannot make the daemon inflate more than max.
func unpack(tw *tar.Writer, r io.Reader, prefix string, now time.Time, unpacked *int64, max int64) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return errdefs.Invalid("invalid_archive", "a directory upload must be a tar.gz: %v", err)
	}
	inflated := &inflateLimit{r: zr, n: unpacked, max: max}
	tr := tar.NewReader(inflated)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: prefix, Mode: 0o777, ModTime: now}); err != nil {
		return err
	}
	tree := newArchiveTree()
	for n := 0; ; n++ {
		h, err := tr.Next()
		if inflated.err != nil {
			return inflated.err
		}
		if errors.Is(err, io.EOF) {
			// The rest (tar padding, anything after it, the gzip trailer)
			// is read too, counted against the limit, so that the whole
			// upload is hashed and nothing is inflated unbounded.
			_, _ = io.Copy(io.Discard, inflated)
			if inflated.err != nil {
				return inflated.err
			}
			_, err = io.Copy(io.Discard, r)
			return err
		}
		if err != nil {
			return errdefs.Invalid("invalid_archive", "the directory upload is not a valid tar.gz: %v", err)
		}
		if n >= maxArchiveEntries {
			return errdefs.TooLarge("archive_too_large", "the directory upload has over %d entries", maxArchiveEntries)
		}
		name := cleanEntry(h.Name)
		if name == "" {
			continue
		}
		out := &tar.Header{Name: prefix + name, ModTime: h.ModTime, Mode: h.Mode & 0o777}
		switch h.Typeflag {
		case tar.TypeDir:
			out.Typeflag, out.Name, out.Mode = tar.TypeDir, out.Name+"/", out.Mode|0o700
		case tar.TypeReg:
			if *unpacked+h.Size > max {
				return inflated.tooLarge()
			}
			out.Typeflag, out.Size = tar.TypeReg, h.Size
		case tar.TypeSymlink:
			out.Typeflag, out.Linkname = tar.TypeSymlink, h.Linkname
		case tar.TypeLink:
			out.Typeflag = tar.TypeLink
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return errdefs.Invalid("archive_special_file", "the directory upload's entry %q is a device or a fifo: only files, directories and links can be uploaded", h.Name)
		default:
			continue // metadata such as a pax global header
		}
		if err := tree.add(h, name); err != nil {
			return err
		}
		if out.Typeflag == tar.TypeLink {
			out.Linkname = prefix + cleanEntry(h.Linkname)
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				if inflated.err != nil {
					return inflated.err
				}
				return err
			}
		}
	}
}

// cleanEntry returns an archive path cleaned to one inside the upload's
// directory, without a leading or trailing slash; "" for the directory
// itself.
func cleanEntry(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+strings.ReplaceAll(name, "\\", "/")), "/")
	if name == "." {
		return ""
	}
	return name
}

// archiveTree is what unpack knows of the tree an archive builds, enough
// to tell where each entry would land once the engine extracts it.
type archiveTree struct {
	links map[string]bool // the symbolic links, by cleaned path
	files map[string]bool // the regular files, which hard links may name
	// upFrom holds each path from which a link's target steps up (".."):
	// where it leads depends on that path never becoming a link.
	upFrom map[string]string // the path, the link that steps up from it
}

func newArchiveTree() *archiveTree {
	return &archiveTree{links: map[string]bool{}, files: map[string]bool{}, upFrom: map[string]string{}}
}

// add checks the entry h, at the cleaned path name, and records it.
func (t *archiveTree) add(h *tar.Header, name string) error {
	if via := t.linkOn(name); via != "" {
		return escapes(h.Name, "goes through the symbolic link %q the archive made before", via)
	}
	if t.links[name] {
		return escapes(h.Name, "replaces a symbolic link the archive made before")
	}
	switch h.Typeflag {
	case tar.TypeSymlink:
		if err := t.checkTarget(h, name); err != nil {
			return err
		}
		for p, link := range t.upFrom {
			if p == name || strings.HasPrefix(p, name+"/") {
				return escapes(h.Name, "would change where the earlier symbolic link %q points", link)
			}
		}
		t.links[name] = true
		delete(t.files, name)
	case tar.TypeLink:
		target := h.Linkname
		if strings.HasPrefix(target, "/") {
			return escapes(h.Name, "is a hard link to the absolute path %q", target)
		}
		clean := path.Clean(target)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return escapes(h.Name, "is a hard link to %q, outside the upload", target)
		}
		if via := t.linkOn(clean); via != "" || t.links[clean] {
			return escapes(h.Name, "is a hard link to %q, through a symbolic link", target)
		}
		if !t.files[clean] {
			return escapes(h.Name, "is a hard link to %q, which is not a file the archive held before", target)
		}
		t.files[name] = true
	case tar.TypeReg:
		t.files[name] = true
	default:
		delete(t.files, name)
	}
	return nil
}

// checkTarget checks that the symbolic link h at name points inside the
// upload, and records the paths its target steps up from.
func (t *archiveTree) checkTarget(h *tar.Header, name string) error {
	target := h.Linkname
	if target == "" {
		return escapes(h.Name, "is a symbolic link with no target")
	}
	if strings.HasPrefix(target, "/") || strings.HasPrefix(target, "\\") {
		return escapes(h.Name, "is a symbolic link to the absolute path %q", target)
	}
	var cur []string
	if dir := path.Dir(name); dir != "." {
		cur = strings.Split(dir, "/")
	}
	var ups []string
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(cur) == 0 {
				return escapes(h.Name, "is a symbolic link to %q, outside the upload", target)
			}
			p := strings.Join(cur, "/")
			if via := t.linkOn(p); via != "" || t.links[p] {
				if via == "" {
					via = p
				}
				return escapes(h.Name, "is a symbolic link to %q, which steps up out of the symbolic link %q", target, via)
			}
			ups = append(ups, p)
			cur = cur[:len(cur)-1]
		default:
			cur = append(cur, c)
		}
	}
	for _, p := range ups {
		t.upFrom[p] = h.Name
	}
	return nil
}

// linkOn returns the symbolic link that is a proper ancestor of name, ""
// if there is none.
func (t *archiveTree) linkOn(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' && t.links[name[:i]] {
			return name[:i]
		}
	}
	return ""
}

// escapes returns the error for an archive entry that could be written, or
// lead, outside the upload's directory.
func escapes(entry, format string, args ...any) error {
	return errdefs.Invalid("archive_entry_escapes", "the directory upload's entry %q %s: an upload stays in %s",
		entry, fmt.Sprintf(format, args...), UploadDir)
}

// inflateLimit counts the bytes inflated from an archive against a limit,
// and fails once past it.
type inflateLimit struct {
	r   io.Reader
	n   *int64 // shared by the request's archives
	max int64
	err error // the limit's error, once reached
}

func (l *inflateLimit) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	// Never read more than one byte past the limit.
	if room := l.max - *l.n + 1; int64(len(p)) > room {
		p = p[:max(room, 1)]
	}
	n, err := l.r.Read(p)
	*l.n += int64(n)
	if *l.n > l.max {
		return 0, l.tooLarge()
	}
	return n, err
}

// tooLarge records and returns the limit's error.
func (l *inflateLimit) tooLarge() error {
	l.err = errdefs.TooLarge("archive_too_large", "the directory upload unpacks to over %s, the limit a one-off",
		humanize.IBytes(uint64(l.max)))
	return l.err
}
