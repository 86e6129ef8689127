package gateway

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// clientWatch is the context a request without a body waits with on the
// fasthttp engine: fasthttp does not tell a handler that its client went
// away, so while such a request waits (its client's connection is then
// neither read nor written), the watch waits for the connection to turn
// readable and peeks at it: end of stream (or a reset) means the client
// is gone, and the context is cancelled, as net/http's is. It consumes
// nothing: a pipelined request's bytes stay for the server, and a client
// that sent one is not gone (the watch then ends, unaware of anything
// after).
//
// The watch starts when the request waits for a replica (the first Done),
// or when the forwarded request has waited watchAfter for the replica's
// response head (arm): most answers come sooner, and cost a timer reset
// and stop, no goroutine. A client gone while the response head is
// awaited closes the replica's connection (the replica sees its client
// go, as with net/http), which ends the read.
type clientWatch struct {
	conn    net.Conn // the client's connection, as accepted
	once    sync.Once
	done    chan struct{} // closed when the client is gone; made by start
	ended   chan struct{} // closed when the watch's goroutine returned; nil if none
	gone    atomic.Bool   // set before done is closed: Err without start's sync
	started atomic.Bool   // start ran: the goroutine may hold the connection's read side

	timer *time.Timer    // starts the watch watchAfter after arm; kept with the pooled watch
	fired sync.WaitGroup // the timer's function, armed and not yet through

	mu    sync.Mutex
	abort net.Conn // the replica's connection to close when the client goes; nil when none

	// handedOff: a streaming response body holds the watch, and releases
	// it when the body is through.
	handedOff bool
}

// watchAfter is how long a forwarded request waits for its response head
// before its client's connection is watched.
const watchAfter = 50 * time.Millisecond

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
	if w.gone.Load() {
		return context.Canceled
	}
	return nil
}

func (w *clientWatch) start() {
	w.done = make(chan struct{})
	peek := peekFunc(w.conn)
	if peek == nil {
		return // not a socket: never cancelled
	}
	// The deadline the request was read under (the header timeout) would
	// end the peek, and the watch with it, long before the answer: the
	// server reads nothing meanwhile, and sets its own deadline before it
	// reads the next request.
	_ = w.conn.SetReadDeadline(time.Time{})
	w.started.Store(true)
	w.ended = make(chan struct{})
	go func() {
		defer close(w.ended)
		if !peek() {
			return
		}
		w.mu.Lock()
		w.gone.Store(true)
		close(w.done)
		if w.abort != nil {
			// Under the lock: disarm cannot hand the connection back
			// to the pool meanwhile.
			_ = w.abort.Close()
		}
		w.mu.Unlock()
	}()
}

// arm has the watch close replica, the connection the request was just
// written on, if the client goes while the response head is awaited:
// at once if it is already gone, else from when the watch starts (at
// the latest watchAfter from now). disarm before using replica again.
func (w *clientWatch) arm(replica net.Conn) {
	w.mu.Lock()
	w.abort = replica
	if w.gone.Load() {
		_ = replica.Close()
	}
	w.mu.Unlock()
	w.fired.Add(1)
	if w.timer == nil {
		w.timer = time.AfterFunc(watchAfter, w.fire)
	} else {
		w.timer.Reset(watchAfter)
	}
}

func (w *clientWatch) fire() {
	defer w.fired.Done()
	w.once.Do(w.start)
}

// disarm undoes arm and reports whether the client is gone (the replica's
// connection is then closed, or about to fail). The watch itself, if it
// started, runs on until release.
func (w *clientWatch) disarm() (gone bool) {
	if w.timer.Stop() {
		w.fired.Done()
	}
	w.fired.Wait() // a start under way is through: done and ended are set
	w.mu.Lock()
	w.abort = nil
	w.mu.Unlock()
	return w.gone.Load()
}

// release stops the watch and returns it to the pool, its timer kept. A
// watch that started ends by a read deadline in the past; the server sets
// its own before it reads the connection again (the idle timeout).
func (w *clientWatch) release() {
	if w.ended != nil {
		_ = w.conn.SetReadDeadline(time.Unix(1, 0))
		<-w.ended
	}
	t := w.timer
	w.conn, w.done, w.ended, w.abort = nil, nil, nil, nil
	w.handedOff = false
	w.started.Store(false)
	w.once = sync.Once{}
	w.gone.Store(false)
	w.timer = t
	clientWatchPool.Put(w)
}

// socketOf returns the connection under the gateway's own wrapper.
func socketOf(c net.Conn) net.Conn {
	if cc, ok := c.(*countedConn); ok {
		return cc.Conn
	}
	return c
}
