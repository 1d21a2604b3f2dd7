package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
// certificate the engine accepts.
type EngineTLS struct {
	CACert, Cert, Key string
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
	cli, err := client.NewClientWithOpts(client.WithHost(e.TCPHost), client.WithAPIVersionNegotiation(),
		client.WithTLSClientConfig(e.TLS.CACert, e.TLS.Cert, e.TLS.Key))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// makeEngineTLS writes into dir a CA, a server certificate for ip signed by
// it, and a client certificate; it returns the client's files and the
// daemon.json settings that make the engine require them.
func makeEngineTLS(dir, ip string) (EngineTLS, map[string]any, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return EngineTLS{}, nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return EngineTLS{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oneoffd test engine CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return EngineTLS{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return EngineTLS{}, nil, err
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certFile, keyFile string, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", "", err
		}
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		return certFile, keyFile, writePEM(keyFile, "EC PRIVATE KEY", keyDER)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := writePEM(caFile, "CERTIFICATE", caDER); err != nil {
		return EngineTLS{}, nil, err
	}
	serverCert, serverKey, err := issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP(ip)})
	if err != nil {
		return EngineTLS{}, nil, err
	}
	clientCert, clientKey, err := issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return EngineTLS{}, nil, err
	}
	cfg := map[string]any{"tls": true, "tlsverify": true, "tlscacert": caFile, "tlscert": serverCert, "tlskey": serverKey}
	return EngineTLS{CACert: caFile, Cert: clientCert, Key: clientKey}, cfg, nil
}

func writePEM(file, typ string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
