package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/oneoffd/oneoffd/internal/testenv"
)

// throughputBytes is what the terminal throughput benchmark prints.
const throughputBytes = 48 << 20

// throughputCommand prints throughputBytes of text lines.
var throughputCommand = fmt.Sprintf("yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEF | head -c %d", throughputBytes)

// BenchmarkTerminalThroughput measures a command printing 48 MiB through
// its TTY, read by a client in a real pseudo-terminal, side by side with
// `docker run -t --rm` of the same image and command, interleaved in the
// same run. The clock runs from the client's exec to its exit; it reports
// MB/s for each and the ratio of oneoffd's to docker's.
func BenchmarkTerminalThroughput(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	d := startDaemon(b)
	app := d.deploy(nil, "")
	image := testenv.Image(b)
	var ours, theirs time.Duration
	var oursBytes, theirsBytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t, n := timeInPTY(b, d.cli("--app", app, "run", throughputCommand))
		ours, oursBytes = ours+t, oursBytes+n
		t, n = timeInPTY(b, exec.Command("docker", "run", "-t", "--rm", image, "sh", "-c", throughputCommand))
		theirs, theirsBytes = theirs+t, theirsBytes+n
	}
	b.StopTimer()
	mbps := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(oursBytes, ours), "oneoff-MB/s")
	b.ReportMetric(mbps(theirsBytes, theirs), "docker-MB/s")
	b.ReportMetric(mbps(oursBytes, ours)/mbps(theirsBytes, theirs), "oneoff/docker")
	d.waitNoContainers()
}

// timeInPTY runs cmd in a pseudo-terminal, reading and dropping its output
// as a terminal emulator would, and returns the time to its exit and how
// many bytes the terminal received.
func timeInPTY(b *testing.B, cmd *exec.Cmd) (time.Duration, int64) {
	b.Helper()
	start := time.Now()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, _ := io.Copy(io.Discard, f) // ends with EIO when the last writer closes
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%v: %v", cmd.Args, err)
	}
	elapsed := time.Since(start)
	if n < throughputBytes {
		b.Fatalf("%v: the terminal got %d bytes, want at least %d", cmd.Args, n, throughputBytes)
	}
	return elapsed, n
}

// delayProxy forwards TCP connections to a target, each byte delivered
// delay after it was read, in each direction: a network delay between
// client and server, as far as latency goes.
type delayProxy struct {
	ln    net.Listener
	delay time.Duration
	dial  func() (net.Conn, error)
	mu    sync.Mutex
	conns []net.Conn
}

func newDelayProxy(tb testing.TB, delay time.Duration, dial func() (net.Conn, error)) *delayProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &delayProxy{ln: ln, delay: delay, dial: dial}
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			// The connection itself takes a round trip, as over a network.
			time.Sleep(2 * p.delay)
			up, err := p.dial()
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(up, c)
			p.pipe(c, up)
		}()
	}
}

// pipe copies from src to dst, each chunk delay after it was read.
func (p *delayProxy) pipe(dst, src net.Conn) {
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(p.delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	if tc, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// BenchmarkStartLatencyDelayed measures the start of `run --rm` with 25 ms
// each way between the client and the daemon (a delaying proxy of its
// own), side by side with `docker -H tcp://...` through the same delay to
// the same engine: the oneoff CLI (attaching on the create request's
// connection, its default, and with --attach-via tcp the create request
// then a connection to the attach port) and the docker CLI, each from exec
// to the first byte of `echo ready` on its stdout.
func BenchmarkStartLatencyDelayed(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	const delay = 25 * time.Millisecond
	attachProxy := newDelayProxy(b, delay, nil)
	d := startDaemon(b, "--attach-host", attachProxy.addr())
	attachProxy.dial = func() (net.Conn, error) { return net.Dial("tcp", d.attach) }
	apiHost := d.api[len("http://"):]
	apiProxy := newDelayProxy(b, delay, func() (net.Conn, error) { return net.Dial("tcp", apiHost) })
	sock := engineSocketPath(b)
	engineProxy := newDelayProxy(b, delay, func() (net.Conn, error) { return net.Dial("unix", sock) })
	app := d.deploy(nil, "")
	image := testenv.Image(b)

	var ours, dialled, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cli := d.cli("--app", app, "run", "echo", "ready")
		cli.Env = append(cli.Env, "ONEOFF_API_URL=http://"+apiProxy.addr())
		ours += timeFirstByte(b, cli)
		// The create request, then a connection to the attach port.
		cli = d.cli("--app", app, "run", "--attach-via", "tcp", "echo", "ready")
		cli.Env = append(cli.Env, "ONEOFF_API_URL=http://"+apiProxy.addr())
		dialled += timeFirstByte(b, cli)
		theirs += timeFirstByte(b, exec.Command("docker", "-H", "tcp://"+engineProxy.addr(), "run", "--rm", image, "echo", "ready"))
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()*1000/n, "oneoff-ms/op")
	b.ReportMetric(dialled.Seconds()*1000/n, "oneoff-tcp-ms/op")
	b.ReportMetric(theirs.Seconds()*1000/n, "docker-ms/op")
	b.ReportMetric(float64(ours)/float64(theirs), "oneoff/docker")
	b.ReportMetric(float64(dialled)/float64(theirs), "oneoff-tcp/docker")
	d.waitNoContainers()
}

// engineSocketPath is the machine's Docker engine's unix socket.
func engineSocketPath(b *testing.B) string {
	b.Helper()
	host := testenv.Docker(b).DaemonHost()
	const prefix = "unix://"
	if len(host) <= len(prefix) || host[:len(prefix)] != prefix {
		b.Skipf("the engine is at %s, not on a unix socket", host)
	}
	sock := filepath.Clean(host[len(prefix):])
	if _, err := net.Dial("unix", sock); err != nil {
		b.Skip(errors.Join(errors.New("the engine's socket does not answer"), err))
	}
	return sock
}
