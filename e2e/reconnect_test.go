package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/client"
)

// cutProxy stands between the CLI and the daemon's attach port, as the
// network does: it forwards, and on cut drops every connection at once and
// turns new ones away for a while, as a dropped Wi-Fi would.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target atomic.Value // string
	// drop closes every connection as soon as it is accepted.
	drop atomic.Bool
	// down turns connections away until then (UnixNano).
	down atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
	count int
}

func newCutProxy(t *testing.T) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut(0)
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.drop.Load() || time.Now().UnixNano() < p.down.Load() {
			c.Close()
			continue
		}
		target, _ := p.target.Load().(string)
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.count++
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// cut drops every connection and turns new ones away for d.
func (p *cutProxy) cut(d time.Duration) {
	p.down.Store(time.Now().Add(d).UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// startBehindProxy starts a daemon whose attach URLs point at a proxy.
func startBehindProxy(t *testing.T, extra ...string) (*daemon, *cutProxy) {
	p := newCutProxy(t)
	d := startDaemon(t, append([]string{"--attach-host", p.addr()}, extra...)...)
	p.target.Store(d.attach)
	return d, p
}

// numberedLines is a command printing n numbered lines, slowly enough for
// the connection to drop in the middle, then exiting with status 3.
func numberedLines(n int) string {
	return `i=0; while [ $i -lt ` + strconv.Itoa(n) + ` ]; do i=$((i+1)); echo line-$i; sleep 0.01; done; exit 3`
}

// checkLinesOnce checks that the screen shows line-1 to line-n, each once,
// in order.
func checkLinesOnce(t *testing.T, screen string, n int) {
	t.Helper()
	got := regexp.MustCompile(`line-(\d+)\n`).FindAllStringSubmatch(screen, -1)
	if len(got) != n {
		t.Errorf("the screen shows %d numbered lines, want %d:\n%s", len(got), n, screen)
	}
	for i, m := range got {
		if m[1] != strconv.Itoa(i+1) {
			t.Errorf("line %d of the output is line-%s, want line-%d", i+1, m[1], i+1)
			break
		}
	}
}

// TestReconnect_MidOutput: the connection drops while a command prints
// numbered lines; the CLI reconnects by itself and the screen shows every
// line exactly once, then the command's exit code. Both ways of attaching:
// on the create request's own connection (the default), and by dialling
// the attach port.
func TestReconnect_MidOutput(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"", "tcp"} {
		t.Run("via "+via, func(t *testing.T) {
			t.Parallel()
			const lines = 600
			d, p := startBehindProxy(t, "--reconnect-grace", "30s")
			apiProxy := newCutProxy(t)
			apiProxy.target.Store(strings.TrimPrefix(d.api, "http://"))
			app := d.deploy(nil, "")
			args := []string{"--api", "http://" + apiProxy.addr(), "--app", app, "run"}
			if via != "" {
				args = append(args, "--attach-via", via)
			}
			tm := startInPTY(t, d.cli(append(args, numberedLines(lines))...), 24, 80)
			tm.expect(`line-50\r\n`)
			// Output goes on meanwhile, into the replay buffer.
			apiProxy.cut(time.Second)
			p.cut(time.Second)
			tm.expect(`reconnecting`)
			tm.expect(`reconnected`)
			if code := tm.wait(); code != 3 {
				t.Errorf("exit code %d, want 3; screen:\n%s", code, tm.screen())
			}
			screen := tm.screen()
			// The CLI's own notices are on the same screen: leave them out.
			screen = regexp.MustCompile(`\n?oneoff: [^\n]*\n`).ReplaceAllString(screen, "\n")
			checkLinesOnce(t, strings.ReplaceAll(screen, "\n\n", "\n"), lines)
			if n := p.connections(); n < 1 {
				t.Errorf("%d connections through the attach port's proxy, want the reconnect's", n)
			}
			d.waitNoContainers()
		})
	}
}

// dialRaw opens a framed attach connection by hand, through the proxy or
// to the daemon.
func dialRaw(t *testing.T, addr string, hello attach.Hello) (net.Conn, *bufio.Reader, attach.Accept, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, hello.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	acc, err := attach.ReadAccept(br)
	if err != nil {
		c.Close()
	}
	return c, br, acc, err
}

// TestReconnect_OldTokenRefusedAndGraceEnds: each reconnect rotates the
// resume token and the old one is refused; once the terminal is gone past
// the grace, the container is stopped and removed.
func TestReconnect_OldTokenRefusedAndGraceEnds(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--reconnect-grace", "3s", "--stop-grace", "1s")
	app := d.deploy(nil, "")
	tty := true
	o, err := d.client().CreateOneOff(context.Background(), app, apitypes.CreateOneOff{Command: apitypes.Command{Line: "sleep 600"}, TTY: &tty})
	if err != nil {
		t.Fatal(err)
	}
	c1, _, acc1, err := dialRaw(t, d.attach, attach.Hello{ID: o.ID, Secret: o.AttachSecret, Framed: true, Resumable: true})
	if err != nil || acc1.Token == "" {
		t.Fatalf("first attach: %+v, %v; want a resume token", acc1, err)
	}
	d.waitState(o.ID, apitypes.Running)
	c1.Close()
	c2, _, acc2, err := dialRaw(t, d.attach, attach.Hello{ID: o.ID, Secret: acc1.Token, Framed: true, Resume: true, From: 0})
	if err != nil || acc2.Token == "" || acc2.Token == acc1.Token {
		t.Fatalf("reconnect: %+v, %v; want a new resume token", acc2, err)
	}
	_, _, _, err = dialRaw(t, d.attach, attach.Hello{ID: o.ID, Secret: acc1.Token, Framed: true, Resume: true, From: 0})
	var refused *attach.RefusedError
	if !errors.As(err, &refused) || refused.Code != "wrong_resume_token" {
		t.Errorf("reconnect with the old token: %v, want wrong_resume_token", err)
	}
	if rec, _ := d.client().OneOff(context.Background(), o.ID); rec.State != apitypes.Running {
		t.Errorf("after the refused reconnect the one-off is %s, want running", rec.State)
	}
	c2.Close()
	if f := d.waitFinished(o.ID); f.Outcome != apitypes.Disconnected {
		t.Errorf("outcome %s, want %s", f.Outcome, apitypes.Disconnected)
	}
	d.waitNoContainers()
	_, _, _, err = dialRaw(t, d.attach, attach.Hello{ID: o.ID, Secret: acc2.Token, Framed: true, Resume: true, From: 0})
	if !errors.As(err, &refused) || refused.Code != "resume_expired" {
		t.Errorf("reconnect after the grace: %v, want resume_expired", err)
	}
	events, err := d.client().Audit(context.Background(), client.AuditFilter{OneOffID: o.ID})
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, e := range events {
		trail = append(trail, e.Action+": "+e.Detail)
	}
	if all := strings.Join(trail, "\n"); !strings.Contains(all, "reconnected from") || !strings.Contains(all, "did not reconnect within 3s") {
		t.Errorf("audit trail:\n%s\nwant the reconnect and the end of the grace", all)
	}
}

// TestAttach_ThroughWebSocket: the attach port cannot be reached (the
// proxy drops every connection). oneoff run works all the same, on the
// API's port; so does oneoff attach, which falls back to the WebSocket by
// itself and says so once; and --attach-via https forces it.
func TestAttach_ThroughWebSocket(t *testing.T) {
	t.Parallel()
	d, p := startBehindProxy(t)
	p.drop.Store(true)
	app := d.deploy(nil, "")
	tm := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	tm.expect(`# `)
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app, State: apitypes.Running})
	if err != nil || len(list) != 1 {
		t.Fatalf("running one-offs %v, %v", list, err)
	}
	second := startInPTY(t, d.cli("attach", list[0].ID), 24, 80)
	second.expect(`Attached to`)
	second.send("echo $((6*7)); exit 4\r")
	second.expect(`42`)
	if code := second.wait(); code != 4 {
		t.Errorf("exit code %d, want 4; screen:\n%s", code, second.screen())
	}
	if n := strings.Count(second.screen(), "attaching through the API's HTTPS port"); n != 1 {
		t.Errorf("the fallback is told %d times, want once; screen:\n%s", n, second.screen())
	}
	tm.wait()

	forced := startInPTY(t, d.cli("--app", app, "run", "--attach-via", "https", "sh"), 24, 80)
	forced.expect(`# `)
	forced.send("exit 6\r")
	if code := forced.wait(); code != 6 {
		t.Errorf("exit code %d, want 6; screen:\n%s", code, forced.screen())
	}
	if n := p.connections(); n != 0 {
		t.Errorf("%d connections forwarded through the dropping proxy", n)
	}
	d.waitNoContainers()
}

// TestAttach_Rejoin: oneoff attach takes a running session over from
// another terminal, which is let go.
func TestAttach_Rejoin(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	app := d.deploy(nil, "")
	first := startInPTY(t, d.cli("--app", app, "run", "sh"), 24, 80)
	first.expect(`# `)
	list, err := d.client().OneOffs(context.Background(), client.Filter{App: app, State: apitypes.Running})
	if err != nil || len(list) != 1 {
		t.Fatalf("running one-offs %v, %v", list, err)
	}
	second := startInPTY(t, d.cli("attach", list[0].ID), 24, 80)
	second.expect(`Attached to`)
	first.expect(`another terminal took this session over`)
	second.send("echo rejoined-$((1+1)); exit 5\r")
	second.expect(`rejoined-2`)
	if code := second.wait(); code != 5 {
		t.Errorf("exit code %d, want 5; screen:\n%s", code, second.screen())
	}
	if code := first.wait(); code == 0 {
		t.Errorf("the terminal taken over exited 0; screen:\n%s", first.screen())
	}
	d.waitNoContainers()
	_, err = client.New(d.api, d.token, nil).RejoinTerminal(context.Background(), list[0].ID, client.TerminalOptions{})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "not_resumable" {
		t.Errorf("rejoin a finished one-off: %v, want not_resumable", err)
	}
}

// waitState polls a one-off until it is in state s.
func (d *daemon) waitState(id string, s apitypes.State) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := d.client().OneOff(context.Background(), id)
		if err != nil {
			d.t.Fatalf("get one-off %s: %v", id, err)
		}
		if o.State == s {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("one-off %s still %s after 30s, want %s", id, o.State, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
