package swarm

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestRunScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, argv := range [][]string{
		{"echo", "plain"},
		{"printf", "%s|", "it's", "two words", "", "$HOME", "`id`", "a\nb", `back\slash`, "*", "-n"},
	} {
		t.Run(argv[0], func(t *testing.T) {
			// The script's exec replaced by a printer of its arguments.
			script := strings.Replace(runScript(argv), "exec", `printf '%s\0'`, 1)
			out, err := exec.Command(sh, "-c", script).Output()
			if err != nil {
				t.Fatalf("run %q: %v", script, err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			if !slices.Equal(got, argv) {
				t.Errorf("got %q, want %q", got, argv)
			}
		})
	}
}

func TestRunArchive(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(runArchive([]string{"echo", "hi"})))
	var names []string
	var script string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == ".oneoffd/cmd" {
			b, _ := io.ReadAll(tr)
			script = string(b)
		}
	}
	// The go file last: it releases the holder once the script is whole.
	if want := []string{".oneoffd/", ".oneoffd/cmd", ".oneoffd/go"}; !slices.Equal(names, want) {
		t.Errorf("got entries %q, want %q", names, want)
	}
	if want := "exec echo hi\n"; script != want {
		t.Errorf("got script %q, want %q", script, want)
	}
}

func TestHolderScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// The holder's paths, pointed into a directory of the test's.
	dir := t.TempDir()
	script := strings.ReplaceAll(holderScript, runDir, dir)
	cmd := exec.Command(sh, "-c", script)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir+"/cmd", "echo released\n")
	writeFile(t, dir+"/go", "")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "released\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name                      string
		entrypoint, imageCmd, cmd []string
		want                      []string
	}{
		{"command only", nil, []string{"sh"}, []string{"ls", "-l"}, []string{"ls", "-l"}},
		{"entrypoint prepended", []string{"/entry.sh"}, []string{"web"}, []string{"rake", "db:migrate"}, []string{"/entry.sh", "rake", "db:migrate"}},
		{"image command when none", []string{"/entry.sh"}, []string{"web"}, nil, []string{"/entry.sh", "web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commandLine(tt.entrypoint, tt.imageCmd, tt.cmd); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServiceName(t *testing.T) {
	long := strings.Repeat("app", 30) + ".one-off-1." + "0123456789abcdef"
	tests := []struct{ in, want string }{
		{"web.one-off-4821.abc123", "web-one-off-4821-abc123"},
		{"-a..b__c-", "a-b__c"},
		{"é!x", "x"},
		{long, strings.TrimLeft(strings.ReplaceAll(long, ".", "-")[len(long)-maxServiceName:], "-_")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := serviceName(tt.in)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > maxServiceName {
				t.Errorf("got %d characters, want at most %d", len(got), maxServiceName)
			}
		})
	}
}

func TestNodeNames(t *testing.T) {
	node := func(id, host string, labels map[string]string) swarm.Node {
		n := swarm.Node{ID: id}
		n.Description.Hostname = host
		n.Spec.Labels = labels
		n.Status.Addr = "10.0.0.1"
		return n
	}
	got := nodeNames([]swarm.Node{
		node("aaaaaaaaaa", "box", nil),
		node("bbbbbbbbbb", "box", nil),
		node("cccccccccc", "solo", nil),
		node("dddddddddd", "box", map[string]string{labelNode: "db-1"}),
	})
	want := map[string]string{"aaaaaaaaaa": "box-aaaaaa", "bbbbbbbbbb": "box-bbbbbb", "cccccccccc": "solo", "dddddddddd": "db-1"}
	for id, name := range want {
		if got[id].name != name {
			t.Errorf("node %s: got name %q, want %q", id, got[id].name, name)
		}
	}
}

func TestTaskFailed(t *testing.T) {
	tests := []struct {
		said  string
		class error
		code  string
	}{
		{"No such image: reg:5000/app:v1", errdefs.ErrNotFound, "image_not_found"},
		{"pull access denied for app, repository does not exist", errdefs.ErrNotFound, "image_not_found"},
		{"unauthorized: authentication required", errdefs.ErrInvalid, "registry_unauthorized"},
		{"starting container failed: stat /bin/sh: no such file or directory", errdefs.ErrInvalid, "image_without_shell"},
	}
	for _, tt := range tests {
		t.Run(tt.said, func(t *testing.T) {
			task := swarm.Task{Status: swarm.TaskStatus{State: swarm.TaskStateRejected, Err: tt.said}}
			err := taskFailed(oneoff.Spec{Image: "reg:5000/app:v1"}, task)
			e, ok := errdefs.As(err)
			if !ok || e.Class != tt.class || e.Code != tt.code {
				t.Fatalf("got %v, want class %v code %s", err, tt.class, tt.code)
			}
			if !strings.Contains(e.Message, tt.said) {
				t.Errorf("got message %q, want the node's words %q in it", e.Message, tt.said)
			}
		})
	}
}

func TestUnplaceable(t *testing.T) {
	for msg, want := range map[string]bool{
		"no suitable node (insufficient resources on 3 nodes)":               true,
		"no suitable node (scheduling constraints not satisfied on 3 nodes)": true,
		"": false,
	} {
		if got := unplaceable(msg); got != want {
			t.Errorf("unplaceable(%q): got %v, want %v", msg, got, want)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
