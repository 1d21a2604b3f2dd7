package logs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// A real rsyslogd for the drain tests: Debian's rsyslog, plus
// rsyslog-gnutls for TLS. It runs in the foreground as whoever runs the
// tests, with a config that needs no privileges: no imuxsock or imklog,
// only imtcp on a free port of 127.0.0.1 and omfile actions into a
// temporary directory.

// rsyslogFormat is how each received message is written to the output
// file: every field the drain sets, then the message, which may hold '|'.
const rsyslogFormat = `%HOSTNAME%|%syslogfacility-text%|%APP-NAME%|%PROCID%|%MSGID%|` +
	`%syslogseverity-text%|%TIMESTAMP:::date-rfc3339%|%STRUCTURED-DATA%|%msg%\n`

// rsyslogConf is the config: $1 the work directory, $2 the TLS settings
// for global(), $3 the imtcp module's settings, $4 the port.
const rsyslogConf = `# written by the logs package's tests
module(load="builtin:omfile")
global(workDirectory="%[1]s" net.enableDNS="off" processInternalMessages="on"%[2]s)
module(load="imtcp"%[3]s)
template(name="drain" type="string" string="%[5]s")
ruleset(name="drain") {
	action(type="omfile" file="%[1]s/out.log" template="drain")
}
input(type="imtcp" address="127.0.0.1" port="%[4]d" ruleset="drain")
# rsyslogd's own messages, for when a test fails
*.* action(type="omfile" file="%[1]s/rsyslogd.log")
`

// rsyslogReadyTimeout bounds rsyslogd's start and stop.
const rsyslogReadyTimeout = 15 * time.Second

// rsyslog is an rsyslogd that a test starts, stops and starts again, on one
// port, appending to one output file.
type rsyslog struct {
	t    *testing.T
	bin  string
	dir  string
	tls  bool
	port int
	// Roots trusts the server's certificate, for syslog+tls.
	Roots *x509.CertPool

	cmd    *exec.Cmd
	stderr *rsyslogBuffer
	exited chan struct{}
	bound  bool // it has listened on port once: keep that port
}

// rsyslogd returns the path of rsyslogd, skipping the test without it but
// failing it in CI.
func rsyslogd(t *testing.T, tls bool) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...) + " (apt-get install rsyslog rsyslog-gnutls)"
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, err := os.Stat(bin); err != nil {
			missing("no rsyslogd")
		}
	}
	if tls {
		mods, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so")
		more, _ := filepath.Glob("/usr/lib/rsyslog/lmnsd_gtls.so")
		if len(mods)+len(more) == 0 {
			missing("no TLS for rsyslogd: lmnsd_gtls.so not found")
		}
	}
	return bin
}

// newRsyslog returns an rsyslogd on a free port, not yet started, and
// stops it when the test ends. With tls it listens with TLS and a
// certificate for 127.0.0.1 that Roots trusts.
func newRsyslog(t *testing.T, tls bool) *rsyslog {
	t.Helper()
	r := &rsyslog{t: t, bin: rsyslogd(t, tls), dir: t.TempDir(), tls: tls, port: rsyslogPort(t)}
	if tls {
		r.Roots = writeRsyslogCert(t, r.dir)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			own, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
			t.Logf("rsyslogd's log:\n%s", own)
		}
	})
	return r
}

// startRsyslog returns a running rsyslogd.
func startRsyslog(t *testing.T, tls bool) *rsyslog {
	t.Helper()
	r := newRsyslog(t, tls)
	r.Start()
	return r
}

// URL returns the drain URL of the server.
func (r *rsyslog) URL() string {
	scheme := "syslog+tcp"
	if r.tls {
		scheme = "syslog+tls"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, r.port)
}

// Start starts rsyslogd and waits until it listens. Until it has listened
// once, a port found taken is swapped for another; after, it keeps its port
// and waits for it to be free.
func (r *rsyslog) Start() {
	r.t.Helper()
	deadline := time.Now().Add(rsyslogReadyTimeout)
	for {
		err := r.start(deadline)
		if err == nil {
			r.bound = true
			return
		}
		r.Stop()
		if !errors.Is(err, errRsyslogPortTaken) || time.Now().After(deadline) {
			r.t.Fatalf("start rsyslogd: %v", err)
		}
		if !r.bound {
			r.port = rsyslogPort(r.t)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

var errRsyslogPortTaken = errors.New("port taken")

func (r *rsyslog) start(deadline time.Time) error {
	var globalTLS, moduleTLS string
	if r.tls {
		globalTLS = fmt.Sprintf(` defaultNetstreamDriverCAFile="%[1]s/ca.pem"`+
			` defaultNetstreamDriverCertFile="%[1]s/cert.pem" defaultNetstreamDriverKeyFile="%[1]s/key.pem"`, r.dir)
		moduleTLS = ` StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"`
	}
	conf := filepath.Join(r.dir, "rsyslog.conf")
	text := fmt.Sprintf(rsyslogConf, r.dir, globalTLS, moduleTLS, r.port, rsyslogFormat)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	own := filepath.Join(r.dir, "rsyslogd.log")
	os.Remove(own) // this run's messages only
	r.stderr = &rsyslogBuffer{}
	r.cmd = exec.Command(r.bin, "-n", "-f", conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	r.cmd.Stdout = r.stderr
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	r.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(r.cmd)

	for {
		b, _ := os.ReadFile(own)
		said := string(b) + r.stderr.String()
		switch {
		case strings.Contains(said, "Address already in use"),
			strings.Contains(said, "Could not create tcp listener"):
			return fmt.Errorf("%w: %d", errRsyslogPortTaken, r.port)
		case strings.Contains(said, "] start"):
			// The listener is set up by now; make sure it answers.
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second)
			if err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("rsyslogd exited: %s\n%s", r.cmd.ProcessState, said)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rsyslogd not ready after %v:\n%s", rsyslogReadyTimeout, said)
		}
	}
}

// Stop stops rsyslogd with SIGTERM and waits for it to exit.
func (r *rsyslog) Stop() {
	r.t.Helper()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(rsyslogReadyTimeout):
		r.cmd.Process.Kill()
		<-r.exited
		r.t.Errorf("rsyslogd did not stop on SIGTERM; killed it")
	}
	r.cmd = nil
}

// syslogRecord is one message as rsyslogd wrote it to its output file.
type syslogRecord struct {
	Hostname, Facility, App, ProcID, MsgID, Severity, Time, StructuredData, Msg string
}

// Records returns what rsyslogd has written so far, in order.
func (r *rsyslog) Records() []syslogRecord {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "out.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	var recs []syslogRecord
	for line := range strings.Lines(string(b)) {
		if !strings.HasSuffix(line, "\n") {
			break // being written
		}
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "|", 9)
		if len(f) != 9 {
			r.t.Fatalf("rsyslogd wrote %q, not 9 fields", line)
		}
		recs = append(recs, syslogRecord{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]})
	}
	return recs
}

// WaitMsgs waits until every one of msgs has arrived, at least once, and
// returns the records so far.
func (r *rsyslog) WaitMsgs(msgs []string) []syslogRecord {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs := r.Records()
		seen := make(map[string]bool, len(recs))
		for _, rec := range recs {
			seen[rec.Msg] = true
		}
		var missing []string
		for _, m := range msgs {
			if !seen[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d lines never arrived, the first %q", len(missing), len(msgs), missing[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rsyslogPort returns a port of 127.0.0.1 that was free a moment ago.
func rsyslogPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeRsyslogCert writes ca.pem, and cert.pem and key.pem for 127.0.0.1
// signed by it, into dir, and returns a pool that trusts the CA.
func writeRsyslogCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "oneoffd test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// rsyslogBuffer is a bytes.Buffer safe for a writer and a reader.
type rsyslogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *rsyslogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *rsyslogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
