package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// randomFile writes size random bytes into a file and returns its path and
// sha256.
func randomFile(t testing.TB, dir, name string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func TestUploads(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--upload-max-file", "60MiB", "--upload-max-request", "100MiB")
	app := d.deploy(nil, "")
	dir := t.TempDir()
	big, bigSum := randomFile(t, dir, "dump.sql", 50<<20)

	t.Run("50 MiB arrive byte-identical, attached", func(t *testing.T) {
		t.Parallel()
		out, err := d.cli("--app", app, "run", "--file", big, "sha256sum /tmp/uploads/dump.sql").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), bigSum+"  /tmp/uploads/dump.sql") {
			t.Errorf("in the container: %q, want sha256 %s", out, bigSum)
		}
	})
	t.Run("50 MiB arrive byte-identical, detached, before the command starts", func(t *testing.T) {
		t.Parallel()
		out, err := d.cli("--app", app, "run", "--detached", "--tail", "--file", big, "sha256sum /tmp/uploads/dump.sql").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), bigSum+"  /tmp/uploads/dump.sql") {
			t.Errorf("in the container: %q, want sha256 %s", out, bigSum)
		}
	})
	t.Run("a progress bar on a terminal", func(t *testing.T) {
		t.Parallel()
		tm := startInPTY(t, d.cli("--app", app, "run", "--file", big, "echo done"), 24, 100)
		tm.expect(`uploading dump\.sql`)
		tm.expect(`100%`)
		tm.expect(`done`)
		if code := tm.wait(); code != 0 {
			t.Errorf("exit code %d; screen:\n%s", code, tm.screen())
		}
	})
	t.Run("a directory arrives whole", func(t *testing.T) {
		t.Parallel()
		src := filepath.Join(t.TempDir(), "fixtures")
		if err := os.MkdirAll(filepath.Join(src, "nested", "deeper"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, sum := randomFile(t, filepath.Join(src, "nested", "deeper"), "blob.bin", 100000)
		if err := os.WriteFile(filepath.Join(src, "readme.txt"), []byte("hello\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("readme.txt", filepath.Join(src, "link")); err != nil {
			t.Fatal(err)
		}
		out, err := d.cli("--app", app, "run", "--file", src,
			"cd /tmp/uploads/fixtures && find . | sort && sha256sum nested/deeper/blob.bin && cat link").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := ".\n./link\n./nested\n./nested/deeper\n./nested/deeper/blob.bin\n./readme.txt\n" + sum + "  nested/deeper/blob.bin\nhello\n"
		if string(out) != want {
			t.Errorf("in the container:\n%s\nwant:\n%s", out, want)
		}
	})
	t.Run("hostile and clashing names stay in /tmp/uploads", func(t *testing.T) {
		t.Parallel()
		files := []client.File{
			memFile("../../etc/passwd", "not the passwd"),
			memFile("/etc/hostname", "not the hostname"),
			memFile("..", "dots"),
			memFile("a\nb\x00c", "control characters"),
			memFile("passwd", "a second passwd"),
			memFile(".env", "a dotfile"),
		}
		tty := false
		o, err := d.client().CreateOneOffWithFiles(context.Background(), app, apitypes.CreateOneOff{
			Command: apitypes.Command{Line: `cd /tmp/uploads && for f in *; do echo "$f=$(cat "$f")"; done; echo ".env=$(cat .env)"; head -1 /etc/passwd; ls /tmp`},
			TTY:     &tty,
		}, files, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range o.Uploads {
			names = append(names, u.Name)
		}
		if got, want := strings.Join(names, ","), "passwd,hostname,upload,a_b_c,passwd-2,.env"; got != want {
			t.Errorf("names = %s, want %s", got, want)
		}
		got := runRaw(t, d, o, "", "")
		want := "a_b_c=control characters\nhostname=not the hostname\npasswd=not the passwd\npasswd-2=a second passwd\nupload=dots\n.env=a dotfile\nroot:x:0:0:root:/root:/bin/sh\nuploads\n"
		if got != want {
			t.Errorf("in the container:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("over the limit: 413 with the limit, nothing left", func(t *testing.T) {
		t.Parallel()
		huge, _ := randomFile(t, t.TempDir(), "huge.bin", 61<<20)
		out, err := d.cli("--app", app, "run", "--file", huge, "true").CombinedOutput()
		if exitCode(t, err) != 1 || !strings.Contains(string(out), `file "huge.bin" is 61 MiB, over the limit of 60 MiB a file`) {
			t.Errorf("got %v, %q", err, out)
		}
		out, err = d.cli("--app", app, "run", "--file", big, "--file", big, "--file", big, "true").CombinedOutput()
		if exitCode(t, err) != 1 || !strings.Contains(string(out), "over 100 MiB, the limit a one-off") {
			t.Errorf("got %v, %q", err, out)
		}
		var ce *client.Error
		_, err = d.client().CreateOneOffWithFiles(context.Background(), app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "true"}},
			[]client.File{{Name: "huge.bin", Size: 61 << 20, Open: func() (io.ReadCloser, error) { return os.Open(huge) }}}, nil)
		if !errors.As(err, &ce) || ce.Status != http.StatusRequestEntityTooLarge || ce.Code != "upload_too_large" {
			t.Errorf("API: %v, want 413 upload_too_large", err)
		}
	})
	t.Run("a file cut short: refused, nothing left", func(t *testing.T) {
		t.Parallel()
		// What a client that died mid-upload sends: fewer bytes than declared.
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		part, _ := mw.CreateFormField("request")
		fmt.Fprint(part, `{"command": "true", "detached": true, "files": [{"name": "cut.bin", "size": 1000}]}`)
		part, _ = mw.CreateFormFile("file", "cut.bin")
		part.Write(make([]byte, 600))
		mw.Close()
		req, _ := http.NewRequest(http.MethodPost, d.api+"/v1/apps/"+app+"/oneoffs", &body)
		req.Header.Set("Authorization", "Bearer "+d.token)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(msg), `file \"cut.bin\" ended after 600 of the 1000 bytes declared`) {
			t.Errorf("answer %d %s", resp.StatusCode, msg)
		}
	})
	t.Run("files in a JSON body are refused", func(t *testing.T) {
		t.Parallel()
		_, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
			Command: apitypes.Command{Line: "true"}, Files: []apitypes.Upload{{Name: "x", Size: 1}}})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != "files_need_multipart" {
			t.Errorf("got %v, want files_need_multipart", err)
		}
	})
	t.Cleanup(func() {
		// Whatever failed left its one-off finished, its container gone.
		list, _ := d.client().OneOffs(context.Background(), client.Filter{App: app})
		for _, o := range list {
			if o.State != apitypes.Finished {
				d.waitFinished(o.ID)
			}
		}
		d.waitNoContainers()
	})
}

// memFile is a file to upload with the given name and content.
func memFile(name, content string) client.File {
	return client.File{Name: name, Size: int64(len(content)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(content)), nil
	}}
}
