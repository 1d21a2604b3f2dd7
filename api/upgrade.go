package api

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"

	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/internal/version"
	"github.com/oneoffd/oneoffd/oneoff"
)

// AttachUpgrade and the headers of its 101 answer: see apitypes.
const (
	AttachUpgrade         = apitypes.AttachUpgrade
	OneOffIDHeader        = apitypes.OneOffIDHeader
	OneOffNameHeader      = apitypes.OneOffNameHeader
	OneOffAttachURLHeader = apitypes.OneOffAttachURLHeader
)

// attachUpgrade reports whether r asks to attach on its own connection.
func attachUpgrade(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", AttachUpgrade)
}

// upgradeToAttach answers a create request that asked for it by switching
// its connection to the attach protocol, and runs the session on it. It
// reports false, having done nothing, when the connection cannot switch:
// the caller answers as usual.
func (s *Server) upgradeToAttach(w http.ResponseWriter, r *http.Request, o oneoff.OneOff, secret string, window oneoff.TermSize) bool {
	if s.attach == nil || r.ProtoMajor != 1 {
		return false
	}
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		return false
	}
	// A terminal on the API's port is watched as on the attach port's.
	if err := setKeepAlive(tcpConnOf(conn), s.attach.keepAlive); err != nil {
		s.log.Debug("set keepalive failed", "client", conn.RemoteAddr().String(), "err", err)
	}
	_ = conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	_, err = fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %s\r\n%s: %s\r\n%s: %s\r\n%s: %d\r\n\r\n",
		AttachUpgrade, OneOffIDHeader, o.ID, OneOffNameHeader, o.Name, OneOffAttachURLHeader, s.attachURL(r, o.ID),
		VersionHeader, version.API)
	if err != nil {
		_ = conn.Close()
		return true // the one-off waits for a terminal, then is discarded
	}
	log := s.log.With("client", conn.RemoteAddr().String(), "via", "api")
	hello := attach.Hello{ID: o.ID, Secret: secret, Framed: true, Resumable: true, Rows: window.Rows, Cols: window.Cols}
	if window.IsZero() {
		hello.Rows, hello.Cols = 0, 0
	}
	s.attach.handshake(conn, brw.Reader, hello, log)
	return true
}

// tcpConnOf finds the TCP connection under the API's wrappers of c.
func tcpConnOf(c net.Conn) net.Conn {
	for {
		switch cc := c.(type) {
		case *tls.Conn:
			c = cc.NetConn()
		case *limitedConn:
			c = cc.Conn
		default:
			return c
		}
	}
}
