package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

// TestRun_TerminalRestored runs the CLI from a shell in a pseudo-terminal
// and reads the terminal's mode once the CLI has gone: raw mode must be
// undone on every way out.
func TestRun_TerminalRestored(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	oneoff := filepath.Join(binDir, "oneoff")

	check := func(t *testing.T, tm *terminal) {
		t.Helper()
		mode := tm.expect(`MODE\[([^\]]*)\]`)[1]
		for _, flag := range []string{"icanon", "echo", "isig"} {
			if !regexp.MustCompile(`(^|\s)` + flag + `(\s|$)`).MatchString(mode) {
				t.Errorf("after the CLI, the terminal lacks %q (raw mode left on): %s", flag, mode)
			}
		}
	}
	script := func(cmd string) *exec.Cmd {
		c := d.cli() // for its environment
		c.Path, c.Args = "/bin/sh", []string{"sh", "-c", cmd + `; echo "CODE[$?]"; echo "MODE[$(stty -a | tr '\n;' '  ')]"`}
		return c
	}
	t.Run("after the command exits", func(t *testing.T) {
		tm := startInPTY(t, script(oneoff+" --app "+app+" run 'exit 3'"), 24, 80)
		if code := tm.expect(`CODE\[(\d+)\]`)[1]; code != "3" {
			t.Errorf("exit code = %s, want 3", code)
		}
		check(t, tm)
	})
	t.Run("after the daemon went away", func(t *testing.T) {
		d2 := startDaemon(t)
		app2 := d2.deploy(nil, "")
		c := d2.cli()
		c.Path, c.Args = "/bin/sh", []string{"sh", "-c", oneoff + " --app " + app2 + ` run sh; echo "CODE[$?]"; echo "MODE[$(stty -a | tr '\n;' '  ')]"`}
		tm := startInPTY(t, c, 24, 80)
		tm.expect(`# `)
		d2.kill()
		tm.expect(`the connection to oneoffd ended before the one-off did`)
		if code := tm.expect(`CODE\[(\d+)\]`)[1]; code == "0" {
			t.Errorf("exit code = 0 after losing the daemon, want non-zero")
		}
		check(t, tm)
		d2.restart() // reconciles the container the crash left
		d2.waitNoContainers()
	})
	t.Run("after a refusal", func(t *testing.T) {
		tm := startInPTY(t, script(oneoff+" --app nosuchapp run true"), 24, 80)
		if code := tm.expect(`CODE\[(\d+)\]`)[1]; code != "1" {
			t.Errorf("exit code = %s, want 1", code)
		}
		check(t, tm)
	})
	d.waitNoContainers()
}

// TestRun_TLS runs a one-off through a daemon whose API and attach endpoint
// speak TLS, the CLI trusting the daemon's CA.
func TestRun_TLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	d := startDaemon(t, "--tls-cert", cert, "--tls-key", key)
	d.api = strings.Replace(d.api, "http://", "https://", 1)
	// Deploy through the CLI: the test's own client does not trust the CA.
	out, err := d.cli("--ca-cert", cert, "--app", "tls-app", "deploy", "--image", imageFor(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("deploy over TLS: %v: %s", err, out)
	}
	cmd := d.cli("--ca-cert", cert, "--app", "tls-app", "run", "echo over tls")
	out, err = cmd.CombinedOutput()
	if err != nil || string(out) != "over tls\n" {
		t.Errorf("run over TLS: %v, %q; want \"over tls\\n\"", err, out)
	}
	for _, via := range []string{"tcp", "https"} {
		out, err := d.cli("--ca-cert", cert, "--app", "tls-app", "run", "--attach-via", via, "echo over "+via).CombinedOutput()
		if err != nil || string(out) != "over "+via+"\n" {
			t.Errorf("run over TLS with --attach-via %s: %v, %q", via, err, out)
		}
	}
	t.Run("without the CA, the CLI refuses the daemon", func(t *testing.T) {
		out, err := d.cli("--app", "tls-app", "run", "true").CombinedOutput()
		if exitCode(t, err) != 1 || !strings.Contains(string(out), "certificate") {
			t.Errorf("got %v, %q; want exit 1 and a word about the certificate", err, out)
		}
	})
	t.Run("openssl s_client uses the raw stream", func(t *testing.T) {
		tty := false
		created := createWithCLI(t, d, cert, "tls-app", "head -n 1", &tty)
		host, port, _ := net.SplitHostPort(d.attach)
		sc := exec.Command("openssl", "s_client", "-quiet", "-verify_return_error", "-CAfile", cert, "-connect", net.JoinHostPort(host, port))
		sc.Stdin = strings.NewReader(created.ID + " " + created.AttachSecret + "\nfirst line\nsecond\n")
		out, err := sc.Output()
		if err != nil || string(out) != "first line\n" {
			t.Errorf("openssl s_client: %v, %q; want \"first line\\n\"", err, out)
		}
	})
	t.Run("the attach endpoint does not speak plain TCP", func(t *testing.T) {
		conn, err := net.Dial("tcp", d.attach)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("id secret\n"))
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "ERR ") || strings.HasPrefix(string(buf[:n]), "OK ") {
			t.Errorf("plain TCP got a protocol answer %q from a TLS endpoint", buf[:n])
		}
	})
	d.waitNoContainers()
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oneoffd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", proxiedHost},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// createWithCLI creates a one-off through a TLS API, trusting ca, and
// returns the API's answer.
func createWithCLI(t *testing.T, d *daemon, ca, app, command string, tty *bool) apitypes.Created {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := client.New(d.api, d.token, &tls.Config{RootCAs: pool})
	o, err := c.CreateOneOff(context.Background(), app, apitypes.CreateOneOff{Command: apitypes.Command{Line: command}, TTY: tty})
	if err != nil {
		t.Fatal(err)
	}
	return o
}
