package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server limits; see ServerOptions.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	// MinMaxHeaderBytes is the smallest MaxHeaderBytes a command accepts:
	// below it, ordinary browser requests would get 431.
	MinMaxHeaderBytes = 4 << 10
	DefaultMaxConns   = 4096
	DefaultDrainGrace = time.Second
)

// ServerOptions bound what one client can hold of a gateway. Zero values
// take the defaults.
type ServerOptions struct {
	// ReadHeaderTimeout bounds the wait for a request's headers, counted
	// from the connection's first byte or from a keep-alive connection's
	// wake-up (slowloris). Default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends nothing for
	// this long. Default 60 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus headers; larger requests
	// get 431. Default 64 KiB (net/http's own default is 1 MiB).
	MaxHeaderBytes int
	// MaxConns bounds the connections one gateway listener holds open.
	// At the bound, a new connection takes the place of the connection
	// that has been idle (or waiting for its first request) longest; when
	// every connection has a request in flight, the new one is answered
	// "503 Service Unavailable" with "Connection: close" and closed.
	// Default 4096.
	MaxConns int
	// DrainGrace is how long Shutdown keeps idle keep-alive connections
	// open, once requests in flight are done, so a request a client sends
	// on one is answered 503 + "Connection: close" rather than cut by the
	// connection closing under it. Default 1 s.
	DrainGrace time.Duration
	// ErrorLog receives net/http's connection errors; default discarded,
	// as a hostile client can cause any number of them.
	ErrorLog *log.Logger
}

func (o *ServerOptions) defaults() {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.DrainGrace <= 0 {
		o.DrainGrace = DefaultDrainGrace
	}
	if o.ErrorLog == nil {
		o.ErrorLog = log.New(discard{}, "", 0)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Server is a gateway's HTTP server: net/http with deliberate limits, a
// bound on open connections, and a shutdown that loses no request (see
// Shutdown).
type Server struct {
	connTable
	handler http.Handler
	http    *http.Server
}

// connTable is a gateway listener's connections, as both engines' servers
// bound and drain them: MaxConns at Accept (boundedListener), the state
// of each connection as its server reports it, and Shutdown's wait.
type connTable struct {
	opts ServerOptions

	draining atomic.Bool // late requests get 503 + Connection: close
	stopping atomic.Bool // the listener was closed on purpose

	mu      sync.Mutex
	ln      net.Listener
	open    int                        // connections accepted and not closed
	active  int                        // connections with a request in flight
	waiting waitList                   // evictable (new or idle) connections, oldest first
	conns   map[net.Conn]*connTracking // every open connection's state
	changed chan struct{}              // poked on every state change while draining

	refused, evicted atomic.Int64
}

func newConnTable(o ServerOptions) connTable {
	return connTable{opts: o, conns: map[net.Conn]*connTracking{}, changed: make(chan struct{}, 1)}
}

// connPhase is a connection's state as the table tracks it, whichever
// server reports it.
type connPhase uint8

const (
	phaseNone   connPhase = iota
	phaseNew              // accepted, no request yet: evictable
	phaseActive           // a request in flight
	phaseIdle             // keep-alive, between requests: evictable
	phaseGone             // closed, or taken over by a handler
)

type connTracking struct {
	conn       net.Conn
	state      connPhase
	prev, next *connTracking // in waiting, when new or idle
	waiting    bool
}

// waitList is an intrusive FIFO of connections, so a request's state
// changes allocate nothing.
type waitList struct{ head, tail *connTracking }

func (l *waitList) pushBack(t *connTracking) {
	t.prev, t.next, t.waiting = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = t
	} else {
		l.head = t
	}
	l.tail = t
}

func (l *waitList) remove(t *connTracking) {
	if !t.waiting {
		return
	}
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		l.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		l.tail = t.prev
	}
	t.prev, t.next, t.waiting = nil, nil, false
}

// NewServer returns a server for a gateway handler.
func NewServer(h http.Handler, o ServerOptions) *Server {
	o.defaults()
	s := &Server{connTable: newConnTable(o), handler: h}
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ConnState:         s.connState,
		ErrorLog:          o.ErrorLog,
	}
	return s
}

// ServerStats counts a server's connections.
type ServerStats struct {
	Open    int   // connections open now
	Active  int   // of which with a request in flight
	Refused int64 // connections answered 503 at the bound, ever
	Evicted int64 // idle connections closed to make room, ever
}

// Stats returns the server's connection counts.
func (s *connTable) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ServerStats{Open: s.open, Active: s.active, Refused: s.refused.Load(), Evicted: s.evicted.Load()}
}

// Serve accepts connections on ln until Shutdown; it returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	err := s.http.Serve(&boundedListener{Listener: ln, s: &s.connTable})
	if s.stopping.Load() {
		return http.ErrServerClosed
	}
	return err
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "kantai: gateway shutting down", http.StatusServiceUnavailable)
		return
	}
	if len(r.TransferEncoding) > 0 {
		// net/http reads such a request by its Transfer-Encoding and has
		// dropped any Content-Length; if both came, something in front may
		// have framed it differently (request smuggling). RFC 9112 §6.1:
		// close the connection after answering, so nothing that followed
		// on it is read as another request.
		w.Header().Set("Connection", "close")
	}
	if r.Method == http.MethodConnect {
		// The gateway is no forward proxy: no tunnels, whatever the host.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "kantai: CONNECT is not supported", http.StatusMethodNotAllowed)
		return
	}
	s.handler.ServeHTTP(w, r)
}

// Shutdown stops the server without losing a request:
//  1. the listener closes, so new connections are refused by the kernel
//     (nothing was sent on them, a client may retry elsewhere);
//  2. requests in flight finish and are answered normally;
//  3. a request arriving on an open keep-alive connection meanwhile is
//     answered "503 Service Unavailable" with "Connection: close";
//  4. once nothing is in flight, idle connections get DrainGrace to send
//     one last request (answered as in 3) or close; then the rest close.
//
// If ctx ends first, the connections still open are closed. A connection
// switched to another protocol (a websocket) belongs to its handler: it
// still counts as open, so Shutdown waits for it only as long as for an
// idle connection, and leaves it to end with its process.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain(ctx)
	// The listener was closed above: http.Server closing it again reports
	// net.ErrClosed, which is no failure to drain.
	err := s.http.Shutdown(ctx)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		_ = s.http.Close()
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	return nil
}

// drain does Shutdown's steps 1 to 4 and returns when the connections
// are to be closed.
func (s *connTable) drain(ctx context.Context) {
	s.stopping.Store(true)
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	// Only after the listener is closed: a 503 + close sends its client
	// to dial again, and that dial must find no listener rather than a
	// backlog that closes under it.
	s.draining.Store(true)
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	graceRunning := false
wait:
	for {
		s.mu.Lock()
		open, active := s.open, s.active
		s.mu.Unlock()
		switch {
		case open == 0:
			break wait
		case active == 0 && !graceRunning:
			grace.Reset(s.opts.DrainGrace)
			graceRunning = true
		case active > 0 && graceRunning:
			// A late request woke an idle connection: the grace starts
			// again once it is answered.
			grace.Stop()
			graceRunning = false
		}
		select {
		case <-s.changed:
		case <-grace.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stopping.Store(true)
	s.draining.Store(true)
	return s.http.Close()
}

func (s *connTable) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// connState is net/http's report of a connection's state.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	var ph connPhase
	switch st {
	case http.StateNew:
		ph = phaseNew
	case http.StateActive:
		ph = phaseActive
	case http.StateIdle:
		ph = phaseIdle
	case http.StateClosed, http.StateHijacked:
		ph = phaseGone
	}
	s.track(c, ph)
}

// track records which connections may be evicted (new or idle) and how
// many have a request in flight.
func (s *connTable) track(c net.Conn, st connPhase) {
	cc, _ := c.(*countedConn) // the listener's: it keeps its entry, no map lookup
	s.mu.Lock()
	var t *connTracking
	if cc != nil {
		t = cc.t
	} else {
		t = s.conns[c]
	}
	if t == nil {
		if st != phaseNew {
			s.mu.Unlock()
			return
		}
		t = &connTracking{conn: c}
		s.conns[c] = t
		if cc != nil {
			cc.t = t
		}
	}
	if t.state == phaseActive {
		s.active--
	}
	s.waiting.remove(t)
	t.state = st
	switch st {
	case phaseNew, phaseIdle:
		s.waiting.pushBack(t)
	case phaseActive:
		s.active++
	case phaseGone:
		delete(s.conns, c)
		if cc != nil {
			cc.t = nil
		}
	}
	s.mu.Unlock()
	if s.draining.Load() {
		s.poke()
	}
}

// boundedListener enforces MaxConns at Accept.
type boundedListener struct {
	net.Listener
	s *connTable
}

func (l *boundedListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.open < s.opts.MaxConns {
			s.open++
			s.mu.Unlock()
			return &countedConn{Conn: sockConnOf(c), s: s}, nil
		}
		if t := s.waiting.head; t != nil {
			victim := t.conn
			s.waiting.remove(t)
			s.open++ // the victim's Close gives its place back
			s.mu.Unlock()
			s.evicted.Add(1)
			_ = victim.Close()
			return &countedConn{Conn: sockConnOf(c), s: s}, nil
		}
		s.mu.Unlock()
		s.refused.Add(1)
		refuse(c, s.opts.MaxConns)
	}
}

// refuse answers a connection over the bound and closes it; the write
// goes into an empty socket buffer, so it does not block.
func refuse(c net.Conn, limit int) {
	body := fmt.Sprintf("kantai: gateway at its limit of %d connections, all busy; retry later\n", limit)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	_ = c.Close()
}

// countedConn gives its place back on its first Close.
type countedConn struct {
	net.Conn
	s    *connTable
	once sync.Once
	t    *connTracking // its entry in s.conns while tracked; guarded by s.mu
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.mu.Unlock()
		if c.s.draining.Load() {
			c.s.poke()
		}
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ReadFrom has a response body spliced from a replica's socket into this
// one when r is such a socket, bounded (see fastBody.WriteTo): the kernel
// moves the bytes (splice(2)), and the gateway never copies them. Any
// other r is copied through Write.
func (c *countedConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if _, ok := lr.R.(*net.TCPConn); ok {
			if tc := tcpConnOf(c.Conn); tc != nil {
				// What Write holds goes first (a pipelined request's
				// answer, see holdAnswer).
				if err := sendHeld(c.Conn); err != nil {
					return 0, err
				}
				return tc.ReadFrom(r)
			}
		}
	}
	return relayBody(writerOnly{c.Conn}, r)
}

// writerOnly hides every method of a writer but Write.
type writerOnly struct{ io.Writer }

// CloseWrite half-closes the TCP connection, which net/http uses to let a
// client read a "Connection: close" answer before the socket goes.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
