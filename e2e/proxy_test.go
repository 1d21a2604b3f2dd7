package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// proxiedHost is a name that only the test's proxy knows: a client that
// reaches the daemon by it went through the proxy.
const proxiedHost = "oneoffd.proxied.test"

// connectProxy is an HTTP proxy of the test's own that tunnels CONNECT
// requests for proxiedHost to the daemon on loopback, and counts them.
type connectProxy struct {
	ln     net.Listener
	target string // host:port of the daemon's API

	mu      sync.Mutex
	tunnels []string
}

func newConnectProxy(t *testing.T, target string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *connectProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.tunnel(c)
	}
}

func (p *connectProxy) tunnel(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	host, port, _ := net.SplitHostPort(req.Host)
	_, targetPort, _ := net.SplitHostPort(p.target)
	if req.Method != http.MethodConnect || host != proxiedHost || port != targetPort {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	p.mu.Lock()
	p.tunnels = append(p.tunnels, req.Host)
	p.mu.Unlock()
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { _, _ = io.Copy(up, br); up.Close() }()
	_, _ = io.Copy(c, up)
}

func (p *connectProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tunnels)
}

// TestRun_HTTPSProxy: a CLI that can reach the daemon only through an
// HTTPS proxy (HTTPS_PROXY) runs one-offs through it: on the create
// request's own connection, and over the WebSocket on the API's port.
func TestRun_HTTPSProxy(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t, t.TempDir())
	d := startDaemon(t, "--tls-cert", cert, "--tls-key", key)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(d.api, "http://"))

	proxy := newConnectProxy(t, net.JoinHostPort("127.0.0.1", port))
	const app = "proxied"
	d.api = strings.Replace(d.api, "http://", "https://", 1)
	// Deploy through the CLI: the test's own client does not trust the CA.
	if out, err := d.cli("--ca-cert", cert, "--app", app, "deploy", "--image", imageFor(t)).CombinedOutput(); err != nil {
		t.Fatalf("deploy over TLS: %v: %s", err, out)
	}
	for _, via := range []string{"", "https"} {
		before := proxy.count()
		args := []string{"--api", "https://" + net.JoinHostPort(proxiedHost, port), "--ca-cert", cert, "--app", app, "run", "--no-tty"}
		if via != "" {
			args = append(args, "--attach-via", via)
		}
		cmd := d.cli(append(args, "echo through the proxy")...)
		cmd.Env = append(cmd.Env, "HTTPS_PROXY=http://"+proxy.ln.Addr().String(), "NO_PROXY=", "no_proxy=")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "through the proxy\n" {
			t.Errorf("run via %q through HTTPS_PROXY: %v, %q", via, err, out)
		}
		if proxy.count() == before {
			t.Errorf("run via %q: no connection went through the proxy", via)
		}
	}
	d.waitNoContainers()
}
