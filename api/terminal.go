package api

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/oneoffd/oneoffd/apitypes"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Rejoined is the answer to POST /v1/oneoffs/{id}/terminal.
type Rejoined = apitypes.Rejoined

// ServeAttach lets the API carry the attach protocol in a WebSocket at
// GET /v1/oneoffs/{id}/attach, for terminals that cannot reach the attach
// port; a, the attach endpoint, checks the handshakes.
func (s *Server) ServeAttach(a *AttachServer) { s.attach = a }

// mountTerminal adds the terminal's routes to the /v1 router.
func (s *Server) mountTerminal(r chi.Router) {
	r.Post("/oneoffs/{id}/terminal", s.rejoin)
	r.Get("/oneoffs/{id}/attach", s.attachWebSocket)
	r.Get("/oneoffs/{id}/recording", s.recording)
}

// recording serves a session's asciicast v2 recording.
func (s *Server) recording(w http.ResponseWriter, r *http.Request) {
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := o.ID
	f, err := s.oneoffs.Recording(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.cast"`)
	http.ServeContent(w, r, "", info.ModTime(), f)
}

func (s *Server) rejoin(w http.ResponseWriter, r *http.Request) {
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec, token, err := s.oneoffs.Rejoin(r.Context(), o.ID, r.Header.Get(RequesterHeader))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Rejoined{ID: rec.ID, Name: rec.Name, AttachURL: s.attachURL(r, rec.ID), ResumeToken: token})
}

// attachWebSocket upgrades the request and hands the connection to the
// attach endpoint: the same handshake line, the same frames, the same
// one-time secret.
func (s *Server) attachWebSocket(w http.ResponseWriter, r *http.Request) {
	if s.attach == nil {
		s.writeError(w, r, errdefs.NotFound("route_not_found", "this daemon does not attach over its API"))
		return
	}
	if !websocketUpgrade(r) {
		s.writeError(w, r, errdefs.Invalid("websocket_required", "GET /v1/oneoffs/{id}/attach is a WebSocket: send the Upgrade: websocket headers"))
		return
	}
	o, err := s.oneOff(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.log.Debug("attach WebSocket upgrade failed", "err", err)
		return
	}
	ws.SetReadLimit(attach.MaxFrameLen + 64)
	remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	c := &wsConn{Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary), remote: remote}
	s.attach.serveWebSocket(c, o.ID)
}

// wsConn is a WebSocket as a net.Conn, with the client's address.
type wsConn struct {
	net.Conn
	remote net.Addr
}

func (c *wsConn) RemoteAddr() net.Addr {
	if c.remote == nil {
		return c.Conn.RemoteAddr()
	}
	return c.remote
}

// serveWebSocket runs the attach protocol on a WebSocket of the API for
// one-off id.
func (a *AttachServer) serveWebSocket(c net.Conn, id string) {
	log := a.log.With("client", c.RemoteAddr().String(), "via", "websocket")
	_ = c.SetDeadline(time.Now().Add(HandshakeTimeout))
	br := bufio.NewReaderSize(c, 32<<10)
	hello, err := attach.ReadHello(br)
	if err == nil && hello.ID != id {
		err = badHello("the handshake names another one-off than the URL")
	}
	if err != nil {
		log.Debug("bad attach handshake", "err", err)
		_ = attach.WriteRefused(c, "bad_handshake", err.Error())
		_ = c.Close()
		return
	}
	a.handshake(c, br, hello, log)
}

func badHello(msg string) error {
	return &attach.RefusedError{Code: "bad_handshake", Message: attach.ErrBadHello.Error() + ": " + msg}
}

// websocketUpgrade reports whether r asks for a WebSocket.
func websocketUpgrade(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

// headerHas reports whether the comma-separated header name holds token,
// case aside.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
