package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// EngineTLS holds the files a client reaches an engine's TCP listener
// with: the CA that signed the engine's certificate, and a client
// certificate the engine accepts. Dir holds them under the names Docker's
// own tools look for in DOCKER_CERT_PATH: ca.pem, cert.pem and key.pem.
type EngineTLS struct {
	CACert, Cert, Key string
	Dir               string
}

// tlsPort is where an engine listens with TLS, as Docker's own convention.
const tlsPort = "2376"

// TCPClient returns a client for the engine's TCP listener with mutual TLS,
// closed when the test ends; the engine must have been started with
// EngineOptions.TLS.
func (e *Engine) TCPClient(tb testing.TB) *client.Client {
	tb.Helper()
	if e.TCPHost == "" {
		tb.Fatalf("test engine %s has no TCP listener: start it with EngineOptions.TLS", e.Namespace)
	}
	return tlsClient(tb, e.TCPHost, e.TLS)
}

// tlsClient returns a client for host with the files of creds, closed
// when the test ends.
func tlsClient(tb testing.TB, host string, creds EngineTLS) *client.Client {
	tb.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation(),
		client.WithTLSClientConfig(creds.CACert, creds.Cert, creds.Key))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// certAuthority is a CA of a test's own: it signs test engines' server
// certificates and the client certificates they accept.
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// file is the CA certificate in PEM, as an engine's tlscacert.
	file string
}

// newCertAuthority makes a CA named name, its certificate in dir/ca.pem.
func newCertAuthority(dir, name string) (*certAuthority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &certAuthority{cert: cert, key: key, file: filepath.Join(dir, "ca.pem")}
	if err := writePEM(ca.file, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return ca, nil
}

// issue writes a certificate signed by the CA and its key.
func (ca *certAuthority) issue(certFile, keyFile, name string, usage x509.ExtKeyUsage, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyFile, "EC PRIVATE KEY", keyDER)
}

// client writes into dir a client certificate named name, its key and the
// CA's certificate, as Docker's tools find them in DOCKER_CERT_PATH.
func (ca *certAuthority) client(dir, name string) (EngineTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return EngineTLS{}, err
	}
	creds := EngineTLS{
		CACert: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Dir: dir,
	}
	if err := ca.issue(creds.Cert, creds.Key, name, x509.ExtKeyUsageClientAuth, nil); err != nil {
		return EngineTLS{}, err
	}
	return creds, writePEM(creds.CACert, "CERTIFICATE", ca.cert.Raw)
}

// server writes into dir a server certificate for ip and its key; it
// returns the daemon.json settings that make an engine serve it and
// require a client certificate the CA signed.
func (ca *certAuthority) server(dir, ip string) (map[string]any, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cert, key := filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	if err := ca.issue(cert, key, "test engine "+ip, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP(ip)}); err != nil {
		return nil, err
	}
	return map[string]any{"tls": true, "tlsverify": true, "tlscacert": ca.file, "tlscert": cert, "tlskey": key}, nil
}

// makeEngineTLS writes into dir a CA of the engine's own, a server
// certificate for ip and, in dir/client, a client certificate; it returns
// the client's files and the daemon.json settings that make the engine
// require them.
func makeEngineTLS(dir, ip string) (EngineTLS, map[string]any, error) {
	ca, err := newCertAuthority(dir, "oneoffd test engine CA")
	if err != nil {
		return EngineTLS{}, nil, err
	}
	cfg, err := ca.server(dir, ip)
	if err != nil {
		return EngineTLS{}, nil, err
	}
	creds, err := ca.client(filepath.Join(dir, "client"), "oneoffd")
	if err != nil {
		return EngineTLS{}, nil, err
	}
	return creds, cfg, nil
}

// randomSerial returns a random certificate serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n, nil
}

func writePEM(file, typ string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
