package gateway

import (
	"context"
	"net"
	"sync"
	"time"
)

// clientWatch is the context a request on the fasthttp engine waits for
// a replica with: fasthttp does not tell a handler that its client went
// away, so while a request without a body waits (the only time its
// client's connection is not read nor written), the watch waits for the
// connection to turn readable and peeks at it: end of stream means the
// client is gone and the context is cancelled, as net/http's is. It
// starts only when the wait does (the first Done), and consumes nothing:
// a pipelined request's bytes stay for the server.
type clientWatch struct {
	conn  net.Conn // the client's connection, as accepted
	once  sync.Once
	done  chan struct{} // closed when the client is gone
	ended chan struct{} // closed when the watch's goroutine returned; nil if none
}

var clientWatchPool = sync.Pool{New: func() any { return new(clientWatch) }}

// watchClient returns a watch of conn; release it when the request is done.
func watchClient(conn net.Conn) *clientWatch {
	w := clientWatchPool.Get().(*clientWatch)
	w.conn = conn
	return w
}

func (w *clientWatch) Deadline() (time.Time, bool) { return time.Time{}, false }
func (w *clientWatch) Value(any) any               { return nil }

func (w *clientWatch) Done() <-chan struct{} {
	w.once.Do(w.start)
	return w.done
}

func (w *clientWatch) Err() error {
	if w.done == nil {
		return nil
	}
	select {
	case <-w.done:
		return context.Canceled
	default:
		return nil
	}
}

func (w *clientWatch) start() {
	w.done = make(chan struct{})
	peek := peekFunc(w.conn)
	if peek == nil {
		return // not a socket: never cancelled
	}
	w.ended = make(chan struct{})
	go func() {
		defer close(w.ended)
		if peek() {
			close(w.done)
		}
	}()
}

// release stops the watch and returns it to the pool. A watch that
// started ends by a read deadline in the past; the server sets its own
// before it reads the connection again.
func (w *clientWatch) release() {
	if w.ended != nil {
		_ = w.conn.SetReadDeadline(time.Unix(1, 0))
		<-w.ended
	}
	*w = clientWatch{}
	clientWatchPool.Put(w)
}

// socketOf returns the connection under the gateway's own wrapper.
func socketOf(c net.Conn) net.Conn {
	if cc, ok := c.(*countedConn); ok {
		return cc.Conn
	}
	return c
}
