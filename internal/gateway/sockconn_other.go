//go:build !linux

package gateway

import "net"

// sockConnOf: conn as it is, where raw socket calls are not made.
func sockConnOf(conn net.Conn) net.Conn { return conn }

// holdRequest, holdAnswer, sendHeld: nothing is held.
func holdRequest(net.Conn)    {}
func holdAnswer(net.Conn)     {}
func sendHeld(net.Conn) error { return nil }

// tcpConnOf returns the TCP socket conn is, or nil.
func tcpConnOf(conn net.Conn) *net.TCPConn {
	tc, _ := conn.(*net.TCPConn)
	return tc
}
