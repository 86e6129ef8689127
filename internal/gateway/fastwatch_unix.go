//go:build unix

package gateway

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekFunc returns a function that waits until conn is readable and
// reports whether its peer closed it (end of stream, or reset), without
// consuming a byte; nil when conn is not a socket.
func peekFunc(conn net.Conn) func() bool {
	rc := rawConn(conn)
	if rc == nil {
		return nil
	}
	return func() bool {
		var b [1]byte
		gone := false
		_ = rc.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return false // wait for readability
			case err != nil || n == 0:
				gone = true
			}
			return true
		})
		return gone
	}
}

// peekGone reports whether conn's peer has closed it, without waiting or
// consuming a byte; false when that cannot be told.
func peekGone(conn net.Conn) bool {
	rc := rawConn(conn)
	if rc == nil {
		return false
	}
	var b [1]byte
	gone := false
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = (err == nil && n == 0) || (err != nil && err != unix.EAGAIN && err != unix.EINTR)
		return true
	})
	return gone
}

// rawConn returns the socket under conn, or nil when there is none.
func rawConn(conn net.Conn) syscall.RawConn {
	sc, ok := socketOf(conn).(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
