package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
)

// FastServer is Server on fasthttp: the same ServerOptions, the same
// bound on connections (the longest-idle connection makes room, 503 and
// close when all are busy) and the same Shutdown that loses no request.
// Its handler is a gateway's FastHandler or FastExternal.
type FastServer struct {
	connTable
	handler fasthttp.RequestHandler
	srv     *fasthttp.Server
	served  chan struct{} // closed when Serve has returned
}

// fastBodyPrefetch is the largest request body of known length the server
// reads whole before the handler runs; larger bodies, and chunked ones,
// stream through as they arrive. fasthttp reads at most 8 KiB ahead
// whatever the bound, so a larger bound would leave bodies between the
// two half read, neither whole nor streamed from the start.
const fastBodyPrefetch = 8 << 10

// fastBodyReadTimeout replaces ReadHeaderTimeout once a request's headers
// are in: the body is read as the replica takes it, for as long as the
// revision's timeout lets the request run (the net/http engine sets no
// bound of its own either).
const fastBodyReadTimeout = 24 * time.Hour

// NewFastServer returns a fasthttp server for a gateway handler.
func NewFastServer(h fasthttp.RequestHandler, o ServerOptions) *FastServer {
	o.defaults()
	s := &FastServer{connTable: newConnTable(o), handler: h, served: make(chan struct{})}
	s.srv = &fasthttp.Server{
		Handler:        s.serve,
		ErrorHandler:   requestError,
		HeaderReceived: bodyDeadline,
		ConnState:      s.connState,
		// fasthttp's ReadTimeout runs from a connection's opening, or from
		// a keep-alive connection's first byte, to the end of the headers
		// (HeaderReceived moves it on): ReadHeaderTimeout's bound.
		ReadTimeout: o.ReadHeaderTimeout,
		IdleTimeout: o.IdleTimeout,
		// A request head must fit the read buffer, else ErrSmallBuffer:
		// answered 431 by requestError.
		ReadBufferSize:               o.MaxHeaderBytes,
		MaxRequestBodySize:           fastBodyPrefetch,
		StreamRequestBody:            true,
		ReduceMemoryUsage:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		// No clock read per request for RequestCtx.Time, which the
		// gateway does not use (its own clock times requests).
		LazyRequestTime: true,
		Logger:          discardLogger{},
	}
	return s
}

// bodyDeadline moves the read deadline on from ReadHeaderTimeout to
// fastBodyReadTimeout for a request with a body. A request without one
// leaves it: nothing more is read for it, and the next request's wait
// sets a deadline of its own.
func bodyDeadline(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if n := h.ContentLength(); n == 0 || n == -2 {
		return fasthttp.RequestConfig{}
	}
	return fasthttp.RequestConfig{ReadTimeout: fastBodyReadTimeout}
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// requestError answers a request that could not be read: 431 for a head
// over MaxHeaderBytes, else 400; fasthttp closes the connection after it.
// A head not complete within ReadHeaderTimeout (a slow client) gets no
// answer: its connection is closed, as net/http's server and nginx do.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		fastError(&ctx.Response, http.StatusRequestHeaderFieldsTooLarge, "kantai: request header fields too large")
	case errors.As(err, &ne) && ne.Timeout():
		// fasthttp writes whatever this leaves: onto a closed connection,
		// where it fails.
		_ = ctx.Conn().Close()
	default:
		fastError(&ctx.Response, http.StatusBadRequest, "kantai: malformed request")
	}
}

// Serve accepts connections on ln until Shutdown; it returns
// http.ErrServerClosed then.
func (s *FastServer) Serve(ln net.Listener) error {
	defer close(s.served)
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	err := s.srv.Serve(&boundedListener{Listener: ln, s: &s.connTable})
	if s.stopping.Load() {
		return http.ErrServerClosed
	}
	return err
}

func (s *FastServer) serve(ctx *fasthttp.RequestCtx) {
	if s.draining.Load() {
		fastError(&ctx.Response, http.StatusServiceUnavailable, "kantai: gateway shutting down")
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetConnectionClose()
		return
	}
	if ctx.IsConnect() {
		// The gateway is no forward proxy: no tunnels, whatever the host.
		fastError(&ctx.Response, http.StatusMethodNotAllowed, "kantai: CONNECT is not supported")
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		return
	}
	s.handler(ctx)
}

// connState is fasthttp's report of a connection's state.
func (s *FastServer) connState(c net.Conn, st fasthttp.ConnState) {
	var ph connPhase
	switch st {
	case fasthttp.StateNew:
		ph = phaseNew
	case fasthttp.StateActive:
		ph = phaseActive
	case fasthttp.StateIdle:
		ph = phaseIdle
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		ph = phaseGone
	default:
		return
	}
	s.track(c, ph)
}

// Shutdown stops the server without losing a request, as Server.Shutdown
// does; then it closes the connections left.
func (s *FastServer) Shutdown(ctx context.Context) error {
	s.drain(ctx)
	s.closeConns()
	s.mu.Lock()
	serving := s.ln != nil
	s.mu.Unlock()
	if !serving {
		return nil
	}
	select {
	case <-s.served:
	case <-ctx.Done():
		return fmt.Errorf("gateway shutdown: %w", ctx.Err())
	}
	return nil
}

// Close closes the listener and every connection at once.
func (s *FastServer) Close() error {
	s.stopping.Store(true)
	s.draining.Store(true)
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	var err error
	if ln != nil {
		if err = ln.Close(); errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	s.closeConns()
	return err
}

// closeConns closes the connections the server still serves; their
// goroutines end on the failed read or write.
func (s *FastServer) closeConns() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
