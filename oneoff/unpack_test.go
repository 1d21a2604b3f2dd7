package oneoff

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
)

const fuzzPrefix = "tmp/uploads/d/"

// tarOf returns the tar of entries; a regular file's content is its
// Linkname.
func tarOf(tb testing.TB, entries ...tar.Header) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body, h.Linkname, h.Size = h.Linkname, "", int64(len(h.Linkname))
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func gz(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// unpackTo runs unpack on archive and returns the tar it wrote, whole or
// as far as it got.
func unpackTo(archive []byte, max int64) ([]byte, int64, error) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	var n int64
	err := unpack(tw, bytes.NewReader(archive), fuzzPrefix, time.Unix(0, 0), &n, max)
	if err == nil {
		err = tw.Close()
	} else {
		tw.Flush()
	}
	return out.Bytes(), n, err
}

func TestUnpack(t *testing.T) {
	t.Run("links inside the upload are kept", func(t *testing.T) {
		archive := gz(t, tarOf(t,
			tar.Header{Typeflag: tar.TypeDir, Name: "bin/"},
			tar.Header{Typeflag: tar.TypeReg, Name: "lib/tool.js", Linkname: "tool"},
			tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/tool", Linkname: "../lib/tool.js"},
			tar.Header{Typeflag: tar.TypeSymlink, Name: "lib/self", Linkname: "."},
			tar.Header{Typeflag: tar.TypeLink, Name: "lib/copy.js", Linkname: "lib/tool.js"},
		))
		out, _, err := unpackTo(archive, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		tr := tar.NewReader(bytes.NewReader(out))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Linkname != "" {
				got[h.Name] = h.Linkname
			}
		}
		want := map[string]string{
			fuzzPrefix + "bin/tool":    "../lib/tool.js",
			fuzzPrefix + "lib/self":    ".",
			fuzzPrefix + "lib/copy.js": fuzzPrefix + "lib/tool.js",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("link %s -> %q, want %q", k, got[k], v)
			}
		}
		checkConfined(t, out, 1<<20)
	})
	t.Run("inflating stops at the limit", func(t *testing.T) {
		const limit = 1 << 20
		bomb := gz(t, append(tarOf(t, tar.Header{Typeflag: tar.TypeReg, Name: "a", Linkname: "A"}), make([]byte, 64<<20)...))
		_, n, err := unpackTo(bomb, limit)
		if e, ok := errdefs.As(err); !ok || !errors.Is(err, errdefs.ErrTooLarge) || e.Code != "archive_too_large" {
			t.Fatalf("got %v, want archive_too_large", err)
		}
		if n > limit+1 {
			t.Errorf("inflated %d bytes, over the limit of %d", n, limit)
		}
	})
}

// FuzzUnpack feeds unpack arbitrary archives, tars that it gzips and raw
// bytes as they come, and checks that whatever it writes, even when it
// fails half-way, stays in the upload's directory once extracted, that no
// special file gets through and that the limit holds.
func FuzzUnpack(f *testing.F) {
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: "x"} }
	sym := func(name, target string) tar.Header {
		return tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}
	}
	hard := func(name, target string) tar.Header {
		return tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}
	}
	for _, entries := range [][]tar.Header{
		{reg("a.txt"), {Typeflag: tar.TypeDir, Name: "sub/"}, reg("sub/b.txt")},
		{sym("etc", "/etc"), reg("etc/passwd")},
		{sym("up", "../../.."), reg("up/x")},
		{sym("d", "sub"), reg("d/passwd")},
		{sym("a", "."), sym("b", "a/.."), sym("c", "b/..")},
		{sym("b", "a/.."), sym("a", ".")},
		{reg("f"), hard("g", "f"), hard("h", "../../etc/shadow")},
		{sym("etc", "sub"), hard("passwd", "etc/passwd")},
		{{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}},
		{{Typeflag: tar.TypeFifo, Name: "pipe"}},
		{reg("../../escape"), reg("/abs")},
		{sym("bin/tool", "../lib/tool.js"), reg("lib/tool.js")},
	} {
		f.Add(tarOf(f, entries...), false)
	}
	f.Add(gz(f, append(tarOf(f, reg("a")), make([]byte, 4<<20)...)), true)
	f.Add([]byte("not a gzip"), true)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		const limit = 1 << 20
		archive := data
		if !raw {
			archive = gz(t, data)
		}
		out, n, err := unpackTo(archive, limit)
		if err != nil {
			if _, ok := errdefs.As(err); !ok {
				t.Fatalf("unpack: %v, not an error with a class and a code", err)
			}
		}
		if n > limit+1 {
			t.Errorf("inflated %d bytes, over the limit of %d", n, limit)
		}
		checkConfined(t, out, limit)
	})
}

// checkConfined extracts the tar out as the engine would, into a tree it
// only imagines, and fails t if any entry lands outside fuzzPrefix, any
// link ends up pointing outside it, a special file is there, or the files
// hold over limit bytes.
func checkConfined(t *testing.T, out []byte, limit int64) {
	t.Helper()
	root := "/" + strings.TrimSuffix(fuzzPrefix, "/")
	links := map[string]string{} // absolute path: target
	inside := func(p string) bool { return p == root || strings.HasPrefix(p, root+"/") }
	tr := tar.NewReader(bytes.NewReader(out))
	var total int64
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err != nil {
			break // the end, or where a failed unpack stopped
		}
		name := path.Clean("/" + h.Name)
		if i < 1 {
			continue // the upload's directory itself
		}
		if !inside(name) || name == root {
			t.Fatalf("entry %q is outside %s", h.Name, root)
		}
		if parent := resolve(links, path.Dir(name)); !inside(parent) {
			t.Fatalf("entry %q is written in %s, outside %s", h.Name, parent, root)
		}
		delete(links, name) // the engine replaces what was there
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			total += h.Size
		case tar.TypeSymlink:
			links[name] = h.Linkname
		case tar.TypeLink:
			if target := resolve(links, path.Clean("/"+h.Linkname)); !inside(target) {
				t.Fatalf("hard link %q is to %s, outside %s", h.Name, target, root)
			}
		default:
			t.Fatalf("entry %q of type %q got through", h.Name, h.Typeflag)
		}
		for l := range links {
			if target := resolve(links, l); !inside(target) {
				t.Fatalf("after %q, the link %s leads to %s, outside %s", h.Name, l, target, root)
			}
		}
	}
	if total > limit {
		t.Errorf("the files hold %d bytes, over the limit of %d", total, limit)
	}
}

// resolve returns where the absolute path p leads, following the links as
// the kernel would; a loop resolves to where it was found, which is no
// escape since the kernel refuses it.
func resolve(links map[string]string, p string) string {
	todo := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		target, ok := links[next]
		if !ok {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return cur
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur
}
