package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// archiveFile is a directory upload holding entries, as a crafted client
// would send it; a regular file's content is its Linkname. trailer follows
// the tar's end inside the gzip stream.
func archiveFile(t *testing.T, name string, trailer []byte, entries ...tar.Header) client.File {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body, h.Linkname, h.Size = h.Linkname, "", int64(len(h.Linkname))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Write(trailer)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	return client.File{Name: name, Size: int64(len(b)), Archive: true, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

func TestUploads_hostileArchives(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--upload-max-request", "1MiB")
	app := d.deploy(nil, "")
	tty := false
	ctx := context.Background()

	t.Run("a symbolic link out, then a file through it: 400, the entry named", func(t *testing.T) {
		evil := archiveFile(t, "evil", nil,
			tar.Header{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "/etc", Mode: 0o777},
			tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Linkname: "hacker::0:0::/:/bin/sh\n"},
		)
		_, err := d.client().CreateOneOffWithFiles(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}, TTY: &tty},
			[]client.File{evil}, nil)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Code != "archive_entry_escapes" {
			t.Fatalf("got %v, want 400 archive_entry_escapes", err)
		}
		if want := `the directory upload's entry "etc" is a symbolic link to the absolute path "/etc"`; !strings.Contains(ce.Message, want) {
			t.Errorf("message %q, want it to say %q", ce.Message, want)
		}
	})
	t.Run("a file through a relative link: refused", func(t *testing.T) {
		evil := archiveFile(t, "evil", nil,
			tar.Header{Typeflag: tar.TypeSymlink, Name: "up", Linkname: "../../..", Mode: 0o777},
			tar.Header{Typeflag: tar.TypeReg, Name: "up/etc/passwd", Linkname: "x"},
		)
		_, err := d.client().CreateOneOffWithFiles(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}, TTY: &tty},
			[]client.File{evil}, nil)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, `entry "up"`) {
			t.Fatalf("got %v, want 400 naming the entry \"up\"", err)
		}
	})
	t.Run("a gzip bomb after the tar's end: 413", func(t *testing.T) {
		bomb := archiveFile(t, "bomb", make([]byte, 64<<20), tar.Header{Typeflag: tar.TypeReg, Name: "a", Linkname: "A"})
		if bomb.Size > 256<<10 {
			t.Fatalf("the bomb is %d bytes", bomb.Size)
		}
		_, err := d.client().CreateOneOffWithFiles(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}, TTY: &tty},
			[]client.File{bomb}, nil)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusRequestEntityTooLarge || ce.Code != "archive_too_large" {
			t.Fatalf("got %v, want 413 archive_too_large", err)
		}
	})
	t.Run("what is allowed stays in /tmp/uploads; /etc/passwd untouched", func(t *testing.T) {
		ok := archiveFile(t, "ok", nil,
			tar.Header{Typeflag: tar.TypeReg, Name: "../../../etc/passwd", Linkname: "not the passwd\n"},
			tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "etc/passwd", Mode: 0o777},
			tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "etc/passwd"},
		)
		o, err := d.client().CreateOneOffWithFiles(ctx, app, apitypes.CreateOneOff{
			Command: apitypes.Command{Line: "head -1 /etc/passwd; cat /tmp/uploads/ok/link; stat -c %h /tmp/uploads/ok/hard"}, TTY: &tty}, []client.File{ok}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := runRaw(t, d, o, "", "")
		if want := "root:x:0:0:root:/root:/bin/sh\nnot the passwd\n2\n"; got != want {
			t.Errorf("in the container:\n%s\nwant:\n%s", got, want)
		}
	})
	d.waitNoContainers()
}
