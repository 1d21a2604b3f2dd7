package api

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/oneoffd/oneoffd/attach"
)

// acceptWriteTimeout bounds the write of a reconnect's reply.
const acceptWriteTimeout = 10 * time.Second

// resume plugs a reconnecting terminal into its one-off's session.
func (a *AttachServer) resume(c net.Conn, br *bufio.Reader, hello attach.Hello, log *slog.Logger) {
	fc := newFramedConn(c, br)
	err := a.oneoffs.Resume(context.Background(), hello.ID, hello.Secret, hello.From, c.RemoteAddr().String(), fc,
		func(name, token string) error {
			// The reply is written while the session waits on it: a
			// reconnect whose network stalls may not hold it for long.
			_ = c.SetDeadline(time.Now().Add(acceptWriteTimeout))
			if err := attach.WriteAccept(c, attach.Accept{Name: name, Token: token}); err != nil {
				return err
			}
			return c.SetDeadline(time.Time{})
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
