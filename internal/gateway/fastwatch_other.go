//go:build !unix

package gateway

import "net"

// peekFunc: where there is no peek, a client's end is seen only when its
// answer is written.
func peekFunc(net.Conn) func() bool { return nil }

// peekGone: never known without a peek.
func peekGone(net.Conn) bool { return false }
