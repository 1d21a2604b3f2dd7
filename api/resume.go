package api

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/oneoffd/oneoffd/attach"
)

// resume plugs a reconnecting terminal into its one-off's session.
func (a *AttachServer) resume(c net.Conn, br *bufio.Reader, hello attach.Hello, log *slog.Logger) {
	fc := newFramedConn(c, br)
	err := a.oneoffs.Resume(context.Background(), hello.ID, hello.Secret, hello.From, c.RemoteAddr().String(), fc,
		func(name, token string) error {
			_ = c.SetDeadline(time.Time{})
			return attach.WriteAccept(c, attach.Accept{Name: name, Token: token})
		})
	if err != nil {
		d := Detail(err)
		log.Info("reconnect refused", "oneoff", hello.ID, "code", d.Code)
		_ = attach.WriteRefused(c, d.Code, d.Message)
		_ = c.Close()
		return
	}
	log.Debug("terminal reconnected", "oneoff", hello.ID, "from", hello.From)
}

// Abandon closes a connection the session no longer uses, first telling
// its user why when msg is not empty.
func (fc *framedConn) Abandon(msg string) {
	if msg != "" {
		_ = fc.c.SetWriteDeadline(time.Now().Add(time.Second))
		_ = fc.w.WriteFrame(attach.Message, []byte(msg+"\r\n"))
	}
	_ = fc.c.Close()
}
