package oneoff_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// memUploads yields in-memory contents, then io.EOF.
type memUploads struct {
	data []string
	next int
}

func (m *memUploads) Next() (io.Reader, error) {
	if m.next >= len(m.data) {
		return nil, io.EOF
	}
	m.next++
	return strings.NewReader(m.data[m.next-1]), nil
}

// upload returns the uploads for contents named names.
func upload(names, contents []string) ([]oneoff.Upload, *memUploads) {
	var ups []oneoff.Upload
	for i, n := range names {
		ups = append(ups, oneoff.Upload{Name: n, Size: int64(len(contents[i]))})
	}
	return ups, &memUploads{data: contents}
}

func tarGz(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := h.Linkname // for regular files in these tests: the content
		if h.Typeflag == tar.TypeReg {
			h.Size, h.Linkname = int64(len(body)), ""
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, body)
		} else if h.Size > 0 {
			io.CopyN(tw, zeroReader{}, h.Size) // the content of another type
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestManager_uploads(t *testing.T) {
	ctx := context.Background()
	t.Run("names made safe and distinct", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		names := []string{"report.csv", "report.csv", "../../etc/passwd", `C:\Users\me\notes.txt`, "..", "a\x00b\nc", ".env", strings.Repeat("é", 200)}
		contents := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
		ups, data := upload(names, contents)
		rec, _ := h.create(t, oneoff.Request{Uploads: ups, UploadData: data})
		want := []string{"report.csv", "report-2.csv", "passwd", "notes.txt", "upload", "a_b_c", ".env", strings.Repeat("é", 127)}
		files := h.rt.Files(t, rec.ContainerID)
		for i, u := range rec.Uploads {
			if u.Name != want[i] || u.Path != "/tmp/uploads/"+want[i] {
				t.Errorf("upload %d: name %q path %q, want %q", i, u.Name, u.Path, want[i])
			}
			if got := string(files["/tmp/uploads/"+u.Name]); got != contents[i] {
				t.Errorf("file %s holds %q, want %q", u.Name, got, contents[i])
			}
		}
		if len(files) != len(names) {
			t.Errorf("%d files in the container, want %d: %v", len(files), len(names), files)
		}
	})
	t.Run("a directory's archive is unpacked, its paths kept inside", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{})
		archive := tarGz(t,
			tar.Header{Typeflag: tar.TypeDir, Name: "sub/"},
			tar.Header{Typeflag: tar.TypeReg, Name: "sub/a.txt", Linkname: "A", Mode: 0o644},
			tar.Header{Typeflag: tar.TypeReg, Name: "../../escape.txt", Linkname: "E", Mode: 0o644},
			tar.Header{Typeflag: tar.TypeReg, Name: "/abs.txt", Linkname: "B", Mode: 0o644},
		)
		rec, _ := h.create(t, oneoff.Request{Uploads: []oneoff.Upload{{Name: "fixtures", Size: int64(len(archive)), Archive: true}},
			UploadData: &memUploads{data: []string{string(archive)}}})
		files := h.rt.Files(t, rec.ContainerID)
		want := map[string]string{"/tmp/uploads/fixtures/sub/a.txt": "A", "/tmp/uploads/fixtures/escape.txt": "E", "/tmp/uploads/fixtures/abs.txt": "B"}
		if len(files) != len(want) {
			t.Errorf("files %v, want %v", files, want)
		}
		for p, content := range want {
			if string(files[p]) != content {
				t.Errorf("%s holds %q, want %q", p, files[p], content)
			}
		}
	})
	t.Run("refusals", func(t *testing.T) {
		big := strings.Repeat("x", 2048)
		for _, tt := range []struct {
			name  string
			cfg   oneoff.Config
			ups   []oneoff.Upload
			data  []string
			class error
			code  string
		}{
			{"a file over the limit", oneoff.Config{MaxUploadFile: 1024}, []oneoff.Upload{{Name: "big", Size: 2048}}, []string{big}, errdefs.ErrTooLarge, "upload_too_large"},
			{"all over the limit", oneoff.Config{MaxUploadTotal: 3000}, []oneoff.Upload{{Name: "a", Size: 2048}, {Name: "b", Size: 2048}}, []string{big, big}, errdefs.ErrTooLarge, "uploads_too_large"},
			{"cut short", oneoff.Config{}, []oneoff.Upload{{Name: "a", Size: 10}}, []string{"12345"}, errdefs.ErrInvalid, "upload_incomplete"},
			{"longer than declared", oneoff.Config{}, []oneoff.Upload{{Name: "a", Size: 3}}, []string{"12345"}, errdefs.ErrInvalid, "upload_size_mismatch"},
			{"a file missing", oneoff.Config{}, []oneoff.Upload{{Name: "a", Size: 1}, {Name: "b", Size: 1}}, []string{"1"}, errdefs.ErrInvalid, "upload_missing"},
			{"a file more", oneoff.Config{}, []oneoff.Upload{{Name: "a", Size: 1}}, []string{"1", "2"}, errdefs.ErrInvalid, "upload_unexpected"},
			{"not an archive", oneoff.Config{}, []oneoff.Upload{{Name: "d", Size: 5, Archive: true}}, []string{"hello"}, errdefs.ErrInvalid, "invalid_archive"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, tt.cfg)
				_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"}, Uploads: tt.ups, UploadData: &memUploads{data: tt.data}})
				wantClass(t, err, tt.class, tt.code)
				// Whatever was made is gone.
				list, _ := h.db.OneOffs(ctx, oneoff.Filter{App: testApp})
				for _, o := range list {
					if o.ContainerID != "" && !h.rt.Removed(o.ContainerID) {
						t.Errorf("container %s of a refused one-off is left", o.ContainerID)
					}
				}
			})
		}
	})
	t.Run("an archive unpacking to over the limit", func(t *testing.T) {
		h := newHarness(t, oneoff.Config{MaxUploadTotal: 4096})
		archive := tarGz(t, tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Linkname: strings.Repeat("0", 10000), Mode: 0o644})
		_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"},
			Uploads: []oneoff.Upload{{Name: "d", Size: int64(len(archive)), Archive: true}}, UploadData: &memUploads{data: []string{string(archive)}}})
		wantClass(t, err, errdefs.ErrTooLarge, "archive_too_large")
	})
	t.Run("hostile archives refused, the entry named", func(t *testing.T) {
		file := func(name string) tar.Header {
			return tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: "x", Mode: 0o644}
		}
		link := func(name, target string) tar.Header {
			return tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}
		}
		hard := func(name, target string) tar.Header {
			return tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}
		}
		for _, tt := range []struct {
			name    string
			entries []tar.Header
			entry   string // named in the message
			code    string
		}{
			{"a symbolic link to an absolute path", []tar.Header{link("etc", "/etc"), file("etc/passwd")}, "etc", "archive_entry_escapes"},
			{"a symbolic link leaving the directory", []tar.Header{link("up", "../../../etc")}, "up", "archive_entry_escapes"},
			{"a symbolic link leaving from a subdirectory", []tar.Header{link("a/b/up", "../../..")}, "a/b/up", "archive_entry_escapes"},
			{"a file through a symbolic link", []tar.Header{link("d", "sub"), file("d/passwd")}, "d/passwd", "archive_entry_escapes"},
			{"a directory through a symbolic link", []tar.Header{link("d", "."), {Typeflag: tar.TypeDir, Name: "d/x/"}}, "d/x/", "archive_entry_escapes"},
			{"a file replacing a symbolic link", []tar.Header{link("l", "sub"), file("l")}, "l", "archive_entry_escapes"},
			{"a link stepping up out of a link", []tar.Header{link("a", "."), link("b", "a/..")}, "b", "archive_entry_escapes"},
			{"a link made after one steps up out of it", []tar.Header{link("b", "a/.."), link("a", ".")}, "a", "archive_entry_escapes"},
			{"a hard link to an absolute path", []tar.Header{hard("passwd", "/etc/passwd")}, "passwd", "archive_entry_escapes"},
			{"a hard link leaving the directory", []tar.Header{hard("passwd", "../../../etc/passwd")}, "passwd", "archive_entry_escapes"},
			{"a hard link through a symbolic link", []tar.Header{link("etc", "sub"), hard("passwd", "etc/passwd")}, "passwd", "archive_entry_escapes"},
			{"a hard link to nothing the archive held", []tar.Header{hard("passwd", "shadow")}, "passwd", "archive_entry_escapes"},
			{"a character device", []tar.Header{{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}, "null", "archive_special_file"},
			{"a block device", []tar.Header{{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}, "sda", "archive_special_file"},
			{"a fifo", []tar.Header{{Typeflag: tar.TypeFifo, Name: "pipe"}}, "pipe", "archive_special_file"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, oneoff.Config{})
				archive := tarGz(t, tt.entries...)
				_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"},
					Uploads: []oneoff.Upload{{Name: "d", Size: int64(len(archive)), Archive: true}}, UploadData: &memUploads{data: []string{string(archive)}}})
				e := wantClass(t, err, errdefs.ErrInvalid, tt.code)
				if !strings.Contains(e.Message, strconv.Quote(tt.entry)) {
					t.Errorf("message %q does not name the entry %q", e.Message, tt.entry)
				}
			})
		}
	})
	t.Run("every inflated byte counts", func(t *testing.T) {
		const limit = 1 << 20
		zeros := strings.Repeat("\x00", 8<<20)
		for _, tt := range []struct {
			name    string
			archive []byte
		}{
			// Highly compressible zeros after the tar's end.
			{"a gzip bomb after the tar's end", gzipped(t, append(tarBytes(t, tar.Header{Typeflag: tar.TypeReg, Name: "a", Linkname: "A"}), zeros...))},
			// Entries unpack skips: the directory itself, an unknown type.
			{"a large entry for the directory itself", tarGz(t, tar.Header{Typeflag: tar.TypeReg, Name: ".", Linkname: zeros})},
			{"a large entry of an unknown type", tarGz(t, tar.Header{Typeflag: 'Z', Name: "blob", Size: int64(len(zeros))})},
		} {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, oneoff.Config{MaxUploadTotal: limit})
				if len(tt.archive) > limit/4 {
					t.Fatalf("the archive is %d bytes: not a bomb", len(tt.archive))
				}
				_, _, err := h.m.Create(ctx, testApp, oneoff.Request{Command: oneoff.Command{Line: "x"},
					Uploads: []oneoff.Upload{{Name: "d", Size: int64(len(tt.archive)), Archive: true}}, UploadData: &memUploads{data: []string{string(tt.archive)}}})
				wantClass(t, err, errdefs.ErrTooLarge, "archive_too_large")
			})
		}
	})
}

// zeroReader reads zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// tarBytes returns the tar of entries, as tarGz does, not compressed.
func tarBytes(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tarGz(t, entries...)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gzipped returns b compressed.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
