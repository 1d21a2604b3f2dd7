package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

func TestRun_InteractiveShell(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")

	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 33, 101)
	tm.expect(`# `)
	tm.send("echo $((6*7))\r")
	tm.expect(`\n42\r?\n`)

	t.Run("size from the first frame", func(t *testing.T) {
		tm.send("stty size\r")
		got := tm.expect(`\n(\d+ \d+)\r?\n`)[1]
		if want := "33 101"; got != want {
			t.Errorf("stty size = %q, want %q", got, want)
		}
	})
	t.Run("size follows the window", func(t *testing.T) {
		tm.resize(40, 120)
		// SIGWINCH travels CLI -> daemon -> engine; poll until it landed.
		deadline := time.Now().Add(10 * time.Second)
		for {
			tm.send("stty size\r")
			got := tm.expect(`\n(\d+ \d+)\r?\n`)[1]
			if got == "40 120" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stty size = %q after resize, want %q", got, "40 120")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("Ctrl-C reaches the process", func(t *testing.T) {
		tm.send("sleep 60\r")
		time.Sleep(300 * time.Millisecond) // let sleep start: Ctrl-C must hit it, not the prompt
		tm.send("\x03")
		tm.send("echo status=$?\r")
		if got := tm.expect(`status=(\d+)`)[1]; got != "130" {
			t.Errorf("sleep's status after Ctrl-C = %s, want 130 (killed by SIGINT)", got)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		tm.send("exit 3\r")
		if got := tm.wait(); got != 3 {
			t.Errorf("CLI exit code = %d, want 3; screen:\n%s", got, tm.screen())
		}
	})
	d.waitNoContainers()
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Outcome != apitypes.Exited || list[0].ExitCode == nil || *list[0].ExitCode != 3 {
		t.Errorf("records = %+v, want one exited with code 3", list)
	}
}

func TestRun_CommandForms(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(map[string]string{"A": "from-release", "B": "from-release"}, "hello: echo hello from procfile")

	tests := []struct {
		name     string
		args     []string
		stdin    string
		want     string
		wantCode int
	}{
		{name: "one argument runs through the shell", args: []string{"run", "echo one; echo two"}, want: "one\ntwo\n"},
		{name: "several arguments run as they are", args: []string{"run", "echo", "$HOME", "a  b"}, want: "$HOME a  b\n"},
		{name: "ls -l as words", args: []string{"run", "ls", "-l", "/bin/busybox"}, want: "/bin/busybox\n"},
		{name: "ls -l as one string", args: []string{"run", "ls -l /bin/busybox"}, want: "/bin/busybox\n"},
		{name: "exit code", args: []string{"run", "exit 3"}, wantCode: 3},
		{name: "piped stdin reaches EOF", args: []string{"run", "cat"}, stdin: "hi\nthere\n", want: "hi\nthere\n"},
		{name: "piped stdin without final newline", args: []string{"run", "wc -c"}, stdin: "12345", want: "5\n"},
		{name: "release env", args: []string{"run", "echo $A $B"}, want: "from-release from-release\n"},
		{name: "request env overrides", args: []string{"run", "-e", "B=from request = x", "-e", "C=c", "echo $A $B $C"}, want: "from-release from request = x c\n"},
		{name: "env value with a newline", args: []string{"run", "-e", "M=line1\nline2", "printf '%s|' \"$M\""}, want: "line1\nline2|"},
		{name: "stderr kept apart", args: []string{"run", "echo out; echo err >&2"}, want: "out\n"},
		{name: "process type", args: []string{"run", "--type", "hello", "and", "more"}, want: "hello from procfile and more\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := d.cli(append([]string{"--app", app}, tt.args...)...)
			cmd.Stdin = strings.NewReader(tt.stdin)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			code := exitCode(t, err)
			if code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if tt.want != "" && !strings.HasSuffix(string(out), tt.want) {
				t.Errorf("stdout = %q, want it to end with %q", out, tt.want)
			}
		})
	}
	t.Run("large piped input arrives whole", func(t *testing.T) {
		t.Parallel()
		data := make([]byte, 3<<20) // several frames, several engine writes
		_, _ = rand.Read(data)
		cmd := d.cli("--app", app, "run", "wc -c")
		cmd.Stdin = strings.NewReader(string(data))
		out, err := cmd.Output()
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit code = %d", code)
		}
		if got, want := strings.TrimSpace(string(out)), fmt.Sprint(len(data)); got != want {
			t.Errorf("wc -c = %s, want %s", got, want)
		}
	})
	t.Run("large output arrives whole and in order", func(t *testing.T) {
		t.Parallel()
		out, err := d.cli("--app", app, "run", "seq 1 200000").Output()
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit code = %d", code)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != 200000 || lines[0] != "1" || lines[len(lines)-1] != "200000" {
			t.Fatalf("got %d lines, first %q, last %q; want 200000 lines, 1 to 200000", len(lines), lines[0], lines[len(lines)-1])
		}
		for i, l := range lines {
			if l != fmt.Sprint(i+1) {
				t.Fatalf("line %d = %q, want %d", i+1, l, i+1)
			}
		}
	})
	t.Run("without a TTY, SIGINT to the CLI reaches the process", func(t *testing.T) {
		t.Parallel()
		cmd := d.cli("--app", app, "run", "--no-tty", `trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.1; done`)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("first line %q, %v; want ready", line, err)
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		rest, _ := io.ReadAll(r)
		if code := exitCode(t, cmd.Wait()); code != 5 || string(rest) != "got INT\n" {
			t.Errorf("after SIGINT: exit %d, output %q; want 5 and \"got INT\"", code, rest)
		}
	})
	t.Run("stderr goes to stderr", func(t *testing.T) {
		t.Parallel()
		cmd := d.cli("--app", app, "run", "echo err >&2")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit code = %d", code)
		}
		if string(out) != "" || stderr.String() != "err\n" {
			t.Errorf("stdout %q, stderr %q; want \"\" and \"err\\n\"", out, stderr.String())
		}
	})
}

func TestRun_Errors(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "web: httpd -f")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown app", []string{"--app", "nope", "run", "true"}, `app "nope" does not exist`},
		{"bad env name", []string{"--app", app, "run", "-e", "1BAD=x", "true"}, `environment variable name "1BAD" is invalid`},
		{"malformed env", []string{"--app", app, "run", "-e", "NOVALUE", "true"}, `-e "NOVALUE": want NAME=VALUE`},
		{"unknown process type", []string{"--app", app, "run", "--type", "worker"}, `process type "worker" is unknown: app "` + app + `" has web`},
		{"no app", []string{"run", "true"}, "which app?"},
		{"no command", []string{"--app", app, "run"}, "what should the one-off run?"},
		{"wrong token", []string{"--token", "nope", "--app", app, "run", "true"}, "the bearer token is wrong"},
		{"stop a one-off that is not there", []string{"stop", "one-off-0000"}, `no one-off has the id or name "one-off-0000"`},
		{"unknown one-off", []string{"inspect", "nosuchid"}, `no one-off has the id or name "nosuchid"`},
		{"image not on the engine nor its registry", []string{"--app", "noimage", "deploy", "--image", "127.0.0.1:1/oneoffd-test/never-built:1"}, `registry 127.0.0.1:1 does not answer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := d.cli(tt.args...)
			out, err := cmd.CombinedOutput()
			if code := exitCode(t, err); code != 1 {
				t.Errorf("exit code = %d, want 1; output: %s", code, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output = %q, want it to say %q", out, tt.want)
			}
			for _, inner := range []string{"Error response from daemon", "dial tcp", "create one-off for", "read upload", "decode"} {
				if strings.Contains(string(out), inner) {
					t.Errorf("output %q shows the wrapped causes (%q), not a sentence", out, inner)
				}
			}
		})
	}
}

func TestAttach_Secrets(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	c := d.client()
	ctx := context.Background()
	create := func() apitypes.Created {
		tty := false
		o, err := c.CreateOneOff(ctx, app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "echo ran"}, TTY: &tty})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	a, b := create(), create()
	refused := func(t *testing.T, url, secret, wantCode string) {
		t.Helper()
		_, err := client.Dial(ctx, url, secret, client.AttachOptions{})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != wantCode {
			t.Fatalf("dial error = %v, want code %s", err, wantCode)
		}
		if ce.Message == "" {
			t.Errorf("refusal %s has no message", ce.Code)
		}
	}
	t.Run("wrong secret", func(t *testing.T) {
		refused(t, a.AttachURL, "not-the-secret", "wrong_secret")
	})
	t.Run("another one-off's secret", func(t *testing.T) {
		refused(t, a.AttachURL, b.AttachSecret, "wrong_secret")
	})
	t.Run("refusals lose nothing", func(t *testing.T) {
		o, err := c.OneOff(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o.State != apitypes.Pending {
			t.Fatalf("state after refused attaches = %s, want pending", o.State)
		}
		if got := runRaw(t, d, a, "", ""); got != "ran\n" {
			t.Errorf("output = %q, want %q", got, "ran\n")
		}
	})
	t.Run("reused secret", func(t *testing.T) {
		d.waitFinished(a.ID)
		refused(t, a.AttachURL, a.AttachSecret, "secret_used")
	})
	t.Run("plain TCP with a wrong secret", func(t *testing.T) {
		conn, err := net.Dial("tcp", d.attach)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s wrong\n", b.ID)
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.HasPrefix(line, "ERR wrong_secret ") {
			t.Errorf("answer = %q, want ERR wrong_secret ...", line)
		}
	})
	if got := runRaw(t, d, b, "", ""); got != "ran\n" {
		t.Errorf("b's output = %q", got)
	}
	d.waitFinished(b.ID)
	d.waitNoContainers()
}

func TestAttach_RawTCP(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	tty := false
	o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
		Command: apitypes.Command{Line: "echo start; cat; echo end"}, TTY: &tty})
	if err != nil {
		t.Fatal(err)
	}
	// What nc or socat would do: send the secret, then the raw stream,
	// then half-close for EOF and read until the daemon closes.
	if got, want := runRaw(t, d, o, "piped through\n", ""), "start\npiped through\nend\n"; got != want {
		t.Errorf("raw stream = %q, want %q", got, want)
	}
	if f := d.waitFinished(o.ID); f.Outcome != apitypes.Exited || *f.ExitCode != 0 {
		t.Errorf("finished %s/%v, want exited/0", f.Outcome, f.ExitCode)
	}
	t.Run("with nc", func(t *testing.T) {
		o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{
			Command: apitypes.Command{Line: "tr a-z A-Z"}, TTY: &tty})
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(d.attach)
		nc := exec.Command("nc", "-N", host, port)
		nc.Stdin = strings.NewReader(o.ID + " " + o.AttachSecret + "\nshout\n")
		out, err := nc.Output()
		if err != nil || string(out) != "SHOUT\n" {
			t.Errorf("nc: %v, %q; want \"SHOUT\\n\"", err, out)
		}
	})
	d.waitNoContainers()
}

// runRaw attaches to o like a plain TCP tool: handshake line, raw bytes,
// half-close; it returns everything the daemon sent.
func runRaw(t *testing.T, d *daemon, o apitypes.Created, stdin, opts string) string {
	t.Helper()
	conn, err := net.Dial("tcp", d.attach)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s%s\n%s", o.ID, o.AttachSecret, opts, stdin)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	out, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read raw stream: %v (got %q)", err, out)
	}
	return string(out)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run CLI: %v", err)
	return -1
}
