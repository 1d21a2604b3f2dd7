package testenv

import (
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
	"testing"
	"time"
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
// for global(), $3 the imtcp module's settings, $4 the port, $5 the format.
const rsyslogConf = `# written by testenv for the tests
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

// rsyslogWaitTimeout bounds WaitMsgs.
const rsyslogWaitTimeout = 20 * time.Second

// Rsyslog is a real rsyslogd, listening on loopback, that a test starts,
// stops and starts again on one port, appending what it receives to one
// output file. Its methods report failures to the test that made it, and
// are to be called from that test's goroutine.
type Rsyslog struct {
	tb    testing.TB
	bin   string
	dir   string
	tls   bool
	port  int
	roots *x509.CertPool

	proc  *process // while it runs
	bound bool     // it has listened on port once: keep that port
}

// rsyslogd returns the path of rsyslogd, skipping the test without it but
// failing it in CI.
func rsyslogd(tb testing.TB, tls bool) string {
	tb.Helper()
	missing := func(format string, args ...any) {
		tb.Helper()
		msg := fmt.Sprintf(format, args...) + " (apt-get install rsyslog rsyslog-gnutls)"
		if InCI() {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
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

// NewRsyslog returns an rsyslogd on a free port of 127.0.0.1, not yet
// started, that is stopped when the test ends. Without rsyslogd the test is
// skipped on a laptop and fails in CI. With tls it listens with TLS, with a
// certificate for 127.0.0.1 signed by a CA of its own (see CAFile, Roots).
func NewRsyslog(tb testing.TB, tls bool) *Rsyslog {
	tb.Helper()
	r := &Rsyslog{tb: tb, bin: rsyslogd(tb, tls), dir: tb.TempDir(), tls: tls, port: rsyslogPort(tb)}
	if tls {
		r.roots = writeRsyslogCert(tb, r.dir)
	}
	tb.Cleanup(func() {
		r.Stop()
		if tb.Failed() {
			own, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
			tb.Logf("rsyslogd's log:\n%s", own)
		}
	})
	return r
}

// StartRsyslog returns a running rsyslogd, as NewRsyslog then Start.
func StartRsyslog(tb testing.TB, tls bool) *Rsyslog {
	tb.Helper()
	r := NewRsyslog(tb, tls)
	r.Start()
	return r
}

// URL returns the drain URL of the server: syslog+tls://127.0.0.1:PORT with
// TLS, syslog+tcp://127.0.0.1:PORT without.
func (r *Rsyslog) URL() string {
	scheme := "syslog+tcp"
	if r.tls {
		scheme = "syslog+tls"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, r.port)
}

// CAFile returns the path of the PEM certificate of the CA that signed the
// server's certificate, or "" without TLS.
func (r *Rsyslog) CAFile() string {
	if !r.tls {
		return ""
	}
	return filepath.Join(r.dir, "ca.pem")
}

// Roots returns a pool that trusts the server's certificate, or nil
// without TLS.
func (r *Rsyslog) Roots() *x509.CertPool { return r.roots }

// Start starts rsyslogd and waits until it listens. Until it has listened
// once, a port found taken is swapped for another; after, it keeps its port
// and waits for it to be free.
func (r *Rsyslog) Start() {
	r.tb.Helper()
	deadline := time.Now().Add(rsyslogReadyTimeout)
	for {
		err := r.start(deadline)
		if err == nil {
			r.bound = true
			return
		}
		r.Stop()
		if !errors.Is(err, errRsyslogPortTaken) || time.Now().After(deadline) {
			r.tb.Fatalf("start rsyslogd: %v", err)
		}
		if !r.bound {
			r.port = rsyslogPort(r.tb)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

var errRsyslogPortTaken = errors.New("port taken")

func (r *Rsyslog) start(deadline time.Time) error {
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
	p, err := startProcess(r.bin, "-n", "-f", conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	if err != nil {
		return err
	}
	r.proc = p

	for {
		b, _ := os.ReadFile(own)
		said := string(b) + p.output.String()
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
		case <-p.exited:
			return fmt.Errorf("rsyslogd exited: %s\n%s", p.cmd.ProcessState, said)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rsyslogd not ready after %v:\n%s", rsyslogReadyTimeout, said)
		}
	}
}

// Stop stops rsyslogd with SIGTERM and waits for it to exit; what it has
// received stays in its output.
func (r *Rsyslog) Stop() {
	r.tb.Helper()
	if r.proc == nil {
		return
	}
	if r.proc.stop(rsyslogReadyTimeout) {
		r.tb.Errorf("rsyslogd did not stop on SIGTERM; killed it")
	}
	r.proc = nil
}

// SyslogRecord is one message as rsyslogd wrote it to its output file.
type SyslogRecord struct {
	Hostname, Facility, App, ProcID, MsgID, Severity, Time, StructuredData, Msg string
}

// Records returns what rsyslogd has written so far, in order, across its
// restarts.
func (r *Rsyslog) Records() []SyslogRecord {
	r.tb.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "out.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	var recs []SyslogRecord
	for line := range strings.Lines(string(b)) {
		if !strings.HasSuffix(line, "\n") {
			break // being written
		}
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "|", 9)
		if len(f) != 9 {
			r.tb.Fatalf("rsyslogd wrote %q, not 9 fields", line)
		}
		recs = append(recs, SyslogRecord{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]})
	}
	return recs
}

// WaitMsgs waits until every one of msgs has arrived, at least once, and
// returns the records so far; it fails the test if some never arrive.
func (r *Rsyslog) WaitMsgs(msgs []string) []SyslogRecord {
	r.tb.Helper()
	deadline := time.Now().Add(rsyslogWaitTimeout)
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
			r.tb.Fatalf("%d of %d lines never arrived, the first %q", len(missing), len(msgs), missing[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rsyslogPort returns a port of 127.0.0.1 that was free a moment ago.
func rsyslogPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeRsyslogCert writes ca.pem, and cert.pem and key.pem for 127.0.0.1
// signed by it, into dir, and returns a pool that trusts the CA.
func writeRsyslogCert(tb testing.TB, dir string) *x509.CertPool {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
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
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
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
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}
