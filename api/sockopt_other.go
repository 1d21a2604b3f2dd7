//go:build !linux

package api

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not known:
// keepalive alone notices a vanished peer.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
