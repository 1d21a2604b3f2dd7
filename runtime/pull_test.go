package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

func TestExperiment(t *testing.T) {
	cli := testenv.Docker(t)
	ctx := context.Background()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < 3; i++ {
		data := make([]byte, 3<<20)
		rand.Read(data)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f" + string(rune('a'+i)), Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, "oneoffd-test/exp:v1", image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	for _, auth := range []bool{true} {
		reg := testenv.StartRegistry(t, auth)
		ref := reg.Push(t, "oneoffd-test/exp:v1")
		t.Log("pushed", ref)
		_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true})
		t.Log("remove", err)
		_, err = cli.ImageRemove(ctx, "oneoffd-test/exp:v1", image.RemoveOptions{Force: true})
		t.Log("remove", err)
		try := func(name, ref string, ac registry.AuthConfig) {
			var o image.PullOptions
			if ac != (registry.AuthConfig{}) {
				o.RegistryAuth, _ = registry.EncodeAuthConfig(ac)
			}
			rc, err := cli.ImagePull(ctx, ref, o)
			if err != nil {
				t.Logf("%s: ImagePull err %T %v unauth=%v nf=%v inv=%v unavail=%v sys=%v unk=%v", name, err, err, cerrdefs.IsUnauthorized(err), cerrdefs.IsNotFound(err), cerrdefs.IsInvalidArgument(err), cerrdefs.IsUnavailable(err), cerrdefs.IsInternal(err), cerrdefs.IsUnknown(err))
				return
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			s := string(b)
			if len(s) > 3000 {
				s = s[:1500] + "\n...\n" + s[len(s)-1500:]
			}
			t.Logf("%s: stream:\n%s", name, s)
		}
		if auth {
			try("nocreds", ref, registry.AuthConfig{})
			try("wrongcreds", ref, registry.AuthConfig{Username: reg.User, Password: "x"})
			try("authonly", ref, registry.AuthConfig{Auth: "b25lb2ZmZDp4"})
		}
		try("ok", ref, reg.AuthConfig())
		try("ok-again", ref, reg.AuthConfig())
		try("notag", ref+"nope", reg.AuthConfig())
		try("norepo", reg.Host()+"/nothing/here:v1", reg.AuthConfig())
		cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true})
		cli.ImageTag(ctx, ref, "oneoffd-test/exp:v1")
	}
	cli.ImageRemove(ctx, "oneoffd-test/exp:v1", image.RemoveOptions{Force: true})
	try := func(name, ref string) {
		rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
		if err != nil {
			t.Logf("%s: ImagePull err %T %v", name, err, err)
			return
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Logf("%s: stream:\n%s", name, b)
	}
	try("closed", "127.0.0.1:1/x/y:v1")
	try("nohost", "nosuchhost.invalid:5000/x/y:v1")
	try("bad", "Bad Ref!")
}
