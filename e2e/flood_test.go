package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// floodLimit is the open-files limit the flooded daemon runs under.
const floodLimit = 256

// startDaemonUnder starts oneoffd as startDaemon does, but run by wrapper.
func startDaemonUnder(t testing.TB, wrapper []string, extra ...string) *daemon {
	t.Helper()
	testenv.Docker(t)
	d := &daemon{t: t, dataDir: t.TempDir(), wrapper: wrapper}
	d.args = append([]string{"--api-addr", "127.0.0.1:0", "--attach-addr", "127.0.0.1:0",
		"--data-dir", d.dataDir, "--log-level", "debug", "--log-format", "json"}, extra...)
	d.start()
	t.Cleanup(d.stop)
	return d
}

// flooder opens connections from an address of its own on the loopback
// network, as one hostile peer would, and closes them all at the end.
type flooder struct {
	t      *testing.T
	dialer net.Dialer
	mu     sync.Mutex
	conns  []net.Conn
}

func newFlooder(t *testing.T, from string) *flooder {
	f := &flooder{t: t, dialer: net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}}
	t.Cleanup(f.close)
	return f
}

// dial opens a connection to addr and keeps it; it reports false when the
// daemon's backlog was full.
func (f *flooder) dial(addr string) (net.Conn, bool) {
	c, err := f.dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false
	}
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	return c, true
}

func (f *flooder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// serving checks that the daemon answers /healthz on a new connection and
// runs a one-off end to end through the CLI.
func serving(t *testing.T, d *daemon, app, word string) {
	t.Helper()
	select {
	case <-d.exited:
		t.Fatalf("oneoffd exited:\n%s", d.logs.String())
	default:
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := fresh.Get(d.api + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: status %d", resp.StatusCode)
	}
	// Both ways to the terminal: on the create request's own connection
	// to the API, and through the attach endpoint.
	for _, via := range []string{"https", "tcp"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := d.cli("--app", app, "run", "--no-tty", "echo", word)
		cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		cmd.Env = append(os.Environ(), "ONEOFF_API_URL="+d.api, "ONEOFF_API_TOKEN="+d.token, "TERM=xterm", "ONEOFF_ATTACH_VIA="+via)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || string(out) != word+"\n" {
			t.Fatalf("oneoff run, attached via %s: %v, %q; want %q (stderr: %s)", via, err, out, word+"\n", stderr.String())
		}
	}
}

// TestFlood: peers open more silent attach connections and idle keep-alive
// API connections than the daemon has file descriptors; the daemon serves
// on, during the flood and after it.
func TestFlood(t *testing.T) {
	t.Parallel()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("no prlimit, and CI needs it: apt-get install util-linux")
		}
		t.Skip("no prlimit (util-linux)")
	}
	d := startDaemonUnder(t, []string{prlimit, fmt.Sprintf("--nofile=%d:%d", floodLimit, floodLimit)})
	app := d.deploy(nil, "")
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Max open files            %d                  %d", floodLimit, floodLimit); !strings.Contains(string(limits), want) {
		t.Fatalf("the daemon's limits:\n%s\nwant %q", limits, want)
	}
	if !strings.Contains(d.logs.String(), `"msg":"open-files limit","limit":256`) {
		t.Errorf("the daemon did not log its open-files limit")
	}
	if !strings.Contains(d.logs.String(), `"flag":"--api-max-conns","configured":1024,"now":64`) {
		t.Errorf("the daemon did not fit its API connection cap to the open-files limit")
	}

	// The silent attach connections come from 20 addresses, 15 each: more
	// than the daemon's descriptors, each address under the per-address cap
	// of 16, together far over the overall cap (64 at this limit).
	const silentAttach, idleAPI, silentAPI, addrs = 300, 300, 100, 20
	peer := newFlooder(t, "127.0.0.2")
	peers := []*flooder{peer}
	for i := 1; i < addrs; i++ {
		peers = append(peers, newFlooder(t, fmt.Sprintf("127.0.0.%d", 2+i)))
	}
	for i := 0; i < silentAttach; i++ {
		peers[i%addrs].dial(d.attach)
	}
	apiAddr := strings.TrimPrefix(d.api, "http://")
	for i := 0; i < idleAPI; i++ {
		c, ok := peer.dial(apiAddr)
		if !ok {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: oneoffd\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for i := 0; i < silentAPI; i++ {
		peer.dial(apiAddr)
	}
	open := 0
	for _, p := range peers {
		open += len(p.conns)
	}
	if open <= floodLimit {
		t.Fatalf("the flood opened %d connections, want more than the limit of %d", open, floodLimit)
	}

	t.Run("during", func(t *testing.T) { serving(t, d, app, "during") })
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections from the peers; the daemon has %d descriptors open", open, len(fds))
	m := d.scrape()
	if m[`oneoffd_attach_connections_refused_total{reason="evicted"}`] == 0 {
		t.Errorf("no pending attach connection evicted for another client's")
	}
	if m["oneoffd_api_connections_shed_total"] == 0 {
		t.Errorf("no API connection shed counted")
	}

	for _, p := range peers {
		p.close()
	}
	t.Run("after", func(t *testing.T) { serving(t, d, app, "after") })
	d.waitNoContainers()
}

// TestRawTTY_ClientsClose: raw clients that send the handshake of a TTY
// one-off and close leave no container behind: each one-off ends as
// disconnected.
func TestRawTTY_ClientsClose(t *testing.T) {
	t.Parallel()
	const clients = 50
	d := startDaemon(t, "--stop-grace", "1s", "--max-oneoffs-per-app", "64")
	app := d.deploy(nil, "")
	c := d.client()
	ids := make([]string, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tty := true
			o, err := c.CreateOneOff(context.Background(), app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "sh"}, TTY: &tty})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = o.ID
			conn, err := net.Dial("tcp", d.attach)
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(conn, "%s %s rows=24 cols=80\n", o.ID, o.AttachSecret)
			conn.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		if f := d.waitFinished(id); f.Outcome != apitypes.Disconnected {
			t.Errorf("one-off %s: outcome %s, want %s", id, f.Outcome, apitypes.Disconnected)
		}
	}
	d.waitNoContainers()
}
