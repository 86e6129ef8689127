package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// The fasthttp engine: the gateway's request path (serve, shared with the
// net/http engine) on a fasthttp server, forwarding on one
// fasthttp.HostClient per replica (its connection pool, buffers and
// dial; the round trip is the engine's own, so that the revision's
// timeouts are connection deadlines and the service time starts when the
// request is written). The request is forwarded in place (its headers
// edited, its body streamed from the client's connection); the response
// is streamed back from the replica's connection, or copied when it is
// small and already read; the replica's slot and connection go back when
// the response body is through.
//
// fasthttp does not watch a client's connection while the handler runs;
// the engine does it itself (clientWatch): while the request waits for a
// replica (unless its body is still to be read from the connection), and
// once its body is forwarded, from watchAfter on, while the response head
// is awaited and while the response body streams. A client gone then has
// the replica's connection closed (the replica sees its client go, as on
// the net/http engine) and, before the head, is counted 499. What the
// watch cannot see: a client that leaves before an answer that comes
// within watchAfter (the answer is written to a closed connection and
// counted with its status), and one that has sent its next request
// (pipelined) before it left. A body the revision's timeout cuts ends with
// the client's connection closed.

// FastHandler returns the gateway's in-cluster handler for a FastServer:
// every route, no redirect, as ServeHTTP.
func (g *Gateway) FastHandler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { serveFast(g, ctx, false) }
}

// FastExternal returns the handler of the gateway's external listener for
// a FastServer, as External.
func (g *Gateway) FastExternal() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { serveFast(g, ctx, true) }
}

func serveFast(g *Gateway, ctx *fasthttp.RequestCtx, external bool) {
	x := fastExchange{ctx: ctx}
	conn := ctx.Conn()
	if conn == nil {
		serve(g, x, external)
		return
	}
	// A request served from the read buffer (pipelined) follows an
	// answer no read has sent yet: it goes first.
	if err := sendHeld(conn); err != nil {
		_ = conn.Close()
		return
	}
	x.watch = watchClient(conn)
	serve(g, x, external)
	if x.watch.handedOff {
		return // a streaming response body releases it (fastBody.Close)
	}
	gone := x.watch.Err() != nil
	x.watch.release()
	if gone {
		// Counted 499, answered nothing: closed, the connection fails
		// the write fasthttp makes of the empty response.
		_ = conn.Close()
		return
	}
	// An answer in memory goes out with the read for the next request
	// (see sockConn): one system call that would find nothing is saved.
	// Not an answer that streams (written past Write, spliced), a
	// switch of protocol, or an answer that closes the connection.
	if !ctx.Hijacked() && !ctx.Response.IsBodyStream() && !ctx.Response.ConnectionClose() && !ctx.Request.ConnectionClose() {
		holdAnswer(conn)
	}
}

// errClientGone is why a request whose client went away was not answered.
var errClientGone = errors.New("client gone")

// Connections the fasthttp engine opens to one replica.
const (
	// fastMaxConnsPerReplica bounds them: beyond, a request without a
	// body is offered to another replica, one with a body gets 502.
	// Twice a listener's default bound on client connections, each of
	// which has at most one request in flight.
	fastMaxConnsPerReplica = 2 * DefaultMaxConns
)

func defaultDial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
}

// fastClient returns the replica's client, made on first use: a gateway
// on the net/http engine never makes one.
func (r *replica) fastClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *fasthttp.HostClient {
	if hc := r.fast.Load(); hc != nil {
		return hc
	}
	hc := &fasthttp.HostClient{
		Addr: r.info.Address,
		// The request's first deadline bounds a new connection's dial
		// (AcquireConn passes it on).
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			ctx := context.Background()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			conn, err := dial(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return sockConnOf(conn), nil
		},
		MaxConns:            fastMaxConnsPerReplica,
		MaxIdleConnDuration: IdleConnTimeout,
		// The connection used last goes first, as net/http's transport
		// does: the fewest connections stay busy (the rest age out), and
		// the one taken is the least likely to have been closed by the
		// replica meanwhile.
		ConnPoolStrategy: fasthttp.LIFO,
	}
	if !r.fast.CompareAndSwap(nil, hc) {
		return r.fast.Load()
	}
	return hc
}

// fastExchange is the fasthttp engine's side of a request.
type fastExchange struct {
	ctx   *fasthttp.RequestCtx
	watch *clientWatch // nil when there is no connection to watch
}

// preparedFor is the request context's user value naming the target the
// request was last prepared for (see prepare): kept in the context, which
// fasthttp pools, rather than in a variable that would escape.
const preparedFor = "kantai.gateway.prepared"

// bytesString views b as a string without copying; the string must not
// outlive b's request.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (x fastExchange) rawHost() string    { return bytesString(x.ctx.Host()) }
func (x fastExchange) requestURI() string { return string(x.ctx.RequestURI()) }
func (x fastExchange) path() string       { return string(x.ctx.Path()) }

// bodyless: fasthttp gives a request with neither Content-Length nor
// Transfer-Encoding the length -2, which for a request means no body.
func (x fastExchange) bodyless() bool {
	n := x.ctx.Request.Header.ContentLength()
	return n == 0 || n == -2
}

// bodyRead reports a request of which nothing is left to read from the
// client's connection: one without a body, or whose body the server read
// whole before the handler ran (fastBodyPrefetch).
func (x fastExchange) bodyRead() bool {
	n := x.ctx.Request.Header.ContentLength()
	return n == 0 || n == -2 || (n > 0 && n <= fastBodyPrefetch)
}

// context ends when the client is gone, for a request with nothing left
// to read while it waits for a replica (see clientWatch); else never:
// fasthttp does not tell a handler that its client went away, and a body
// still to come would look like a client that is there. (forward watches
// the rest itself, through arm.)
func (x fastExchange) context() context.Context {
	if x.watch != nil && x.bodyRead() {
		return x.watch
	}
	return context.Background()
}

// clientGone reports, after a forward failed, whether the client is gone:
// the failure is then its leaving (a body cut short, a closed watch), not
// the replica's, and counts 499.
func (x fastExchange) clientGone() bool {
	switch {
	case x.watch == nil:
		return false
	case x.watch.started.Load():
		// Its peek holds the connection's read side: a second would
		// wait for it. It reports what it has seen.
		return x.watch.Err() != nil
	}
	return peekGone(x.watch.conn)
}

func (x fastExchange) hasPathPrefix(prefix string) bool {
	p := x.ctx.Path()
	return len(p) >= len(prefix) && string(p[:len(prefix)]) == prefix
}

func (x fastExchange) hasHeader(name, value string) bool {
	for _, v := range x.ctx.Request.Header.PeekAll(name) {
		if string(v) == value {
			return true
		}
	}
	return false
}

func (x fastExchange) overTLS() bool {
	if x.ctx.IsTLS() {
		return true
	}
	v := x.ctx.Request.Header.PeekAll("X-Forwarded-Proto")
	return len(v) > 0 && equalFoldBytes(v[len(v)-1], "https")
}

func equalFoldBytes(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// reply answers as http.Error does.
func (x fastExchange) reply(code int, msg string, retryAfter bool) {
	fastError(&x.ctx.Response, code, msg)
	if retryAfter {
		x.ctx.Response.Header.Set("Retry-After", "1")
	}
}

func fastError(resp *fasthttp.Response, code int, msg string) {
	resp.Reset()
	resp.SetStatusCode(code)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.Header.Set("X-Content-Type-Options", "nosniff")
	resp.SetBodyString(msg + "\n")
}

func (x fastExchange) redirect(location string, code int) {
	x.ctx.Response.Header.Set("Location", location)
	x.ctx.SetStatusCode(code)
}

// The fasthttp engine leaves these to fasthttp, which frames messages
// itself: Transfer-Encoding and Trailer describe the body as read, and
// are written anew for the body as sent.
var fastHopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade"}

// prepare edits the request for forwarding to t: hop-by-hop headers out
// (those its Connection header names too), X-Forwarded-For extended,
// X-Forwarded-Proto and -Host replaced, once; the target's headers in and
// the Host rewritten when the route says so, again for another target
// when the request is offered again (the previous target's headers go
// first). It returns the protocol the request asks to switch to, or "".
func (x fastExchange) prepare(t *target) string {
	req := &x.ctx.Request
	h := &req.Header
	// Most requests carry no hop-by-hop header: one look at the head as
	// received spares a lookup per name.
	hop := hopInHead(h.RawHeaders())
	upgrade := ""
	if hop {
		upgrade = fastUpgradeType(h)
	}
	if prev, ok := x.ctx.UserValue(preparedFor).(*target); ok {
		if prev != t {
			for k := range prev.headers {
				h.Del(k)
			}
			x.retarget(t, h.Peek("X-Forwarded-Host"))
		}
		return upgrade
	}
	h.ResetConnectionClose() // the client's connection's matter, not the replica's
	if hop {
		dropHop(h, upgrade)
	}
	var fwd [80]byte
	xff := fwd[:0]
	if prior := h.PeekAll("X-Forwarded-For"); len(prior) > 0 {
		xff = append(xff, prior[len(prior)-1]...)
		xff = append(xff, ", "...)
	}
	if a, ok := x.ctx.RemoteAddr().(*net.TCPAddr); ok {
		xff = a.AddrPort().Addr().Unmap().AppendTo(xff)
		h.SetCanonical(keyForwardedFor, xff)
	}
	if x.ctx.IsTLS() {
		h.SetCanonical(keyForwardedProto, valueHTTPS)
	} else {
		h.SetCanonical(keyForwardedProto, valueHTTP)
	}
	h.SetCanonical(keyForwardedHost, h.Host())
	x.retarget(t, nil)
	// The request goes out with its Host header and its target as
	// received, not as fasthttp would rebuild them from the parsed URI.
	req.UseHostHeader = true
	req.URI().DisablePathNormalizing = true
	return upgrade
}

// Header names and values the engine sets on every request and answer,
// canonical already (SetCanonical skips normalising them).
var (
	keyForwardedFor   = []byte("X-Forwarded-For")
	keyForwardedProto = []byte("X-Forwarded-Proto")
	keyForwardedHost  = []byte("X-Forwarded-Host")
	keyReplica        = []byte(HeaderReplica)
	keyNode           = []byte(HeaderNode)
	valueHTTP         = []byte("http")
	valueHTTPS        = []byte("https")
)

// dropHop deletes the request's hop-by-hop headers and those its
// Connection header names, keeping an upgrade's Connection and Upgrade.
func dropHop(h *fasthttp.RequestHeader, upgrade string) {
	var upgradeTo [32]byte
	up := append(upgradeTo[:0], h.Peek("Upgrade")...)
	if conn := h.Peek("Connection"); len(conn) > 0 {
		// Copied: deleting headers may reuse the value's storage.
		var buf [128]byte
		for v := append(buf[:0], conn...); len(v) > 0; {
			var name []byte
			name, v = cutComma(v)
			switch name = trimSpaceBytes(name); {
			case len(name) == 0, equalFoldBytes(name, "close"), equalFoldBytes(name, "keep-alive"), equalFoldBytes(name, "upgrade"):
			default:
				h.DelBytes(name)
			}
		}
	}
	h.Del("Connection")
	for _, k := range fastHopHeaders {
		h.Del(k)
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.SetBytesV("Upgrade", up)
	}
}

// hopInHead reports whether a request head as received has a header
// named Connection or one of fastHopHeaders.
func hopInHead(raw []byte) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && isHopName(trimSpaceBytes(line[:i])) {
			return true
		}
	}
	return false
}

// isHopName reports Connection or one of fastHopHeaders, in any case.
func isHopName(k []byte) bool {
	if equalFoldBytes(k, "Connection") {
		return true
	}
	for _, h := range fastHopHeaders {
		if equalFoldBytes(k, h) {
			return true
		}
	}
	return false
}

// retarget sets t's headers and Host on the request; host is the Host the
// request came with, to restore when t rewrites none (nil: unchanged).
func (x fastExchange) retarget(t *target, host []byte) {
	h := &x.ctx.Request.Header
	for k, v := range t.headers {
		h.Set(k, v[0])
	}
	switch {
	case t.host != "":
		h.SetHost(t.host)
	case host != nil:
		h.SetHostBytes(host)
	}
	x.ctx.SetUserValue(preparedFor, t)
}

func cutComma(b []byte) (before, after []byte) {
	for i, c := range b {
		if c == ',' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

func trimSpaceBytes(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// fastUpgradeType is upgradeType for a fasthttp request.
func fastUpgradeType(h *fasthttp.RequestHeader) string {
	up := h.Peek("Upgrade")
	if len(up) == 0 {
		return ""
	}
	for _, v := range h.PeekAll("Connection") {
		for len(v) > 0 {
			var name []byte
			name, v = cutComma(v)
			if equalFoldBytes(trimSpaceBytes(name), "upgrade") {
				return string(up)
			}
		}
	}
	return ""
}

// connOf returns c as the connection type HostClient's methods take, which
// fasthttp does not export; the first argument only names that type (it is
// acquireConn, a method expression, which costs nothing to pass).
func connOf[C any](_ func(*fasthttp.HostClient, time.Duration, bool) (C, error), c any) C {
	return c.(C)
}

var acquireConn = (*fasthttp.HostClient).AcquireConn

// isTimeout reports an error of a deadline passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unconnected answers a request whose connection to rep failed with err,
// and reports whether it may be offered to another replica instead. A
// connection refused may; one that did not complete before the deadline
// has spent the request's time (cause), as on the net/http engine.
func (x fastExchange) unconnected(g *Gateway, rev *revision, rep *replica, p *plan, err error, deadline time.Time, cause error, retryable bool) bool {
	now := g.now()
	var timedOut error
	if isTimeout(err) || !time.Now().Before(deadline) {
		timedOut = cause
	}
	if retryable && timedOut == nil {
		g.unreached(rev, rep, now, err)
		return true
	}
	if code, msg := g.unanswered(rev, rep, p, now, err, timedOut, false); code != 499 {
		fastError(&x.ctx.Response, code, msg)
	}
	return false
}

func (x fastExchange) forward(g *Gateway, rev *revision, t *target, rep *replica, start time.Time, retryable bool) bool {
	ctx := x.ctx
	upgrade := x.prepare(t)
	p := rev.plan(rep)
	first, cause := p.firstBound()
	armed := monoNow()
	deadline := armed.Add(first)
	if upgrade != "" {
		return x.forwardUpgrade(g, rev, rep, &p, start, armed, deadline, cause, upgrade, retryable)
	}
	hc := rep.fastClient(g.cfg.Dial)
	head := ctx.IsHead()
	// A connection kept from an earlier request may have been closed by
	// the replica meanwhile; a request without a body is sent again on
	// another, as net/http's transport does.
	for try := 0; ; try++ {
		wait := first // armed just now
		if try > 0 {
			wait = max(time.Until(deadline), time.Millisecond)
		}
		cc, err := hc.AcquireConn(wait, false)
		if err != nil {
			return x.unconnected(g, rev, rep, &p, err, deadline, cause, retryable)
		}
		conn := cc.Conn()
		reused := cc.CreatedTime().Before(armed)
		_ = conn.SetDeadline(deadline)
		bw := hc.AcquireWriter(conn)
		br := hc.AcquireReader(conn)
		back := fasthttp.AcquireResponse()
		back.SkipBody = head
		var sent time.Time
		var gone, cut bool
		if x.bodyRead() {
			sent, gone, err = x.exchange(conn, bw, br, back)
		} else {
			sent, gone, cut, err = x.exchangeStreaming(conn, bw, br, back)
		}
		hc.ReleaseWriter(bw)
		if cut {
			// Part of the client's body is unread: whatever the answer,
			// its connection cannot carry another request. Set last, as
			// the answer's headers replace the flag.
			defer ctx.SetConnectionClose()
		}
		done := monoNow()
		if err != nil || gone {
			hc.ReleaseReader(br)
			fasthttp.ReleaseResponse(back)
			hc.CloseConn(cc)
			if gone {
				// Whatever the replica said, nobody is left to hear it.
				g.unanswered(rev, rep, &p, g.now(), errClientGone, nil, true)
				return false
			}
			if reused && try == 0 && x.bodyless() && !isTimeout(err) {
				continue
			}
			var timedOut error
			if isTimeout(err) || !time.Now().Before(deadline) {
				timedOut = cause
			}
			if code, msg := g.unanswered(rev, rep, &p, g.now(), err, timedOut, false); code != 499 {
				fastError(&ctx.Response, code, msg)
			}
			return false
		}
		if back.StatusCode() == http.StatusSwitchingProtocols {
			// Nobody asked to switch: the connection is no longer HTTP.
			msg := "kantai: replica switched to protocol " + strconv.Quote(string(back.Header.Peek("Upgrade"))) +
				", the client asked for " + strconv.Quote("")
			hc.ReleaseReader(br)
			fasthttp.ReleaseResponse(back)
			hc.CloseConn(cc)
			g.answered(rev, rep, &p, http.StatusBadGateway, start, g.now())
			rev.release(rep, g.now(), p.service(sent, done))
			fastError(&ctx.Response, http.StatusBadGateway, msg)
			return false
		}
		x.relay(g, rev, rep, &p, start, armed, sent, done, back, hc, cc, br, nil)
		return false
	}
}

// exchange writes a request that has nothing left to read from its
// client, then reads the response head; a client gone meanwhile (see
// clientWatch) closes conn and is reported.
func (x fastExchange) exchange(conn net.Conn, bw *bufio.Writer, br *bufio.Reader, back *fasthttp.Response) (sent time.Time, gone bool, err error) {
	holdRequest(conn)
	err = x.ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	sent = monoNow()
	if err != nil {
		return sent, x.clientGone(), err
	}
	if x.watch != nil {
		x.watch.arm(conn)
	}
	err = readResponseHead(back, br)
	if x.watch != nil {
		gone = x.watch.disarm()
	}
	return sent, gone, err
}

// exchangeStreaming forwards a request whose body streams from the client
// while the response head is awaited, as net/http's transport does: a
// replica may answer before it has taken the whole body (a refusal), and
// that answer is relayed. The body is then not sent on; the replica's
// connection and the client's are closed after the answer (the rest of
// the body is never read). The wait for the head also bounds a client
// that stops sending its body: its connection, not the replica's
// deadline, would otherwise hold the request.
func (x fastExchange) exchangeStreaming(conn net.Conn, bw *bufio.Writer, br *bufio.Reader, back *fasthttp.Response) (sent time.Time, gone, cut bool, err error) {
	start := monoNow()
	if body := x.ctx.Request.BodyStream(); body != nil {
		// The server still owns the stream (it drains it after the
		// handler); the request only reads it through copiedBody.
		x.ctx.Request.SetBodyStream(copiedBody{body}, x.ctx.Request.Header.ContentLength())
	}
	written := make(chan error, 1)
	left := false // the writer found the client gone
	go func() {
		err := x.ctx.Request.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		switch {
		case err == nil:
			sent = monoNow()
			if x.watch != nil {
				x.watch.arm(conn)
			}
		case x.clientGone():
			// Nobody is left to answer: end the wait for the head.
			left = true
			_ = conn.SetReadDeadline(time.Unix(1, 0))
		}
		written <- err
	}()
	err = readResponseHead(back, br)
	var werr error
	select {
	case werr = <-written:
	default:
		// The head (or the end of waiting) came first: stop sending the
		// body, whichever side the writer waits on.
		_ = conn.SetWriteDeadline(time.Unix(1, 0))
		if c := x.ctx.Conn(); c != nil {
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
		werr = <-written
	}
	if werr == nil {
		if x.watch != nil {
			gone = x.watch.disarm()
		}
		return sent, gone, false, err
	}
	// Part of the body is unread: neither connection can carry another
	// request. A client that left is gone even if the head came in
	// meanwhile (the writer has cut the replica's connection short).
	back.SetConnectionClose()
	return start, left, true, err
}

// relay passes the replica's response on to the client: headers now, the
// body as the server writes it. The replica's slot and connection go
// back once the body is through (fastBody.Close), or now without one.
// Either hc and cc (a pooled connection), or raw, a connection of its own.
func (x fastExchange) relay(g *Gateway, rev *revision, rep *replica, p *plan, start, armed, sent, done time.Time,
	back *fasthttp.Response, hc *fasthttp.HostClient, cc any, br *bufio.Reader, raw net.Conn) {
	resp := &x.ctx.Response
	service := p.service(sent, done)
	now := g.now()
	back.Header.CopyTo(&resp.Header)
	stripHop(&resp.Header, &back.Header)
	resp.Header.SetCanonical(keyReplica, rep.headerBytes)
	resp.Header.SetCanonical(keyNode, rep.nodeHeaderBytes)
	g.answered(rev, rep, p, back.StatusCode(), start, now)
	fb := fastBodyPool.Get().(*fastBody)
	*fb = fastBody{g: g, rev: rev, rep: rep, service: service, back: back, resp: resp,
		hc: hc, cc: cc, br: br, raw: raw, deadline: armed.Add(p.timeout), length: back.Header.ContentLength()}
	if br != nil && !noBody(back) {
		// Only the head was read. A body of known length already in the
		// read buffer (a small answer) is copied and the replica's
		// connection and slot go back at once; any other streams.
		if n := back.Header.ContentLength(); n >= 0 && n <= br.Buffered() {
			body, _ := br.Peek(n)
			resp.SetBody(body)
			_, _ = br.Discard(n)
		} else {
			back.StreamBody = true
			_ = back.ReadBody(br, 0) // with StreamBody, it only sets up the stream
		}
	}
	if stream := back.BodyStream(); stream != nil {
		fb.stream = stream
		conn := raw
		if conn == nil {
			conn = connOf(acquireConn, cc).Conn()
		}
		fb.conn = conn
		if p.startTimeout < p.timeout {
			// Headers are in: the rest of the timeout covers the body.
			_ = conn.SetDeadline(fb.deadline)
		}
		if x.watch != nil {
			// The body may take its time: a client gone meanwhile has
			// the replica's connection closed, which ends it. The
			// watch is the body's now, released when it is through.
			x.watch.arm(conn)
			x.watch.handedOff = true
			fb.watch = x.watch
		}
		resp.SetBodyStream(fb, back.Header.ContentLength())
		return
	}
	fb.eof = true
	fb.closeAt(now)
}

// noBody reports a response that has no body: to a HEAD request, 1xx,
// 204 or 304.
func noBody(back *fasthttp.Response) bool {
	s := back.StatusCode()
	return back.SkipBody || s < 200 || s == http.StatusNoContent || s == http.StatusNotModified
}

// maxInterim bounds the interim (1xx) answers read before a response.
const maxInterim = 100

// readResponseHead reads a response's head, after any interim answers
// but 101 Switching Protocols; the body is left in br.
func readResponseHead(back *fasthttp.Response, br *bufio.Reader) error {
	for range maxInterim {
		if err := back.Header.Read(br); err != nil {
			return err
		}
		if s := back.StatusCode(); s < 100 || s >= 200 || s == http.StatusSwitchingProtocols {
			return nil
		}
	}
	return errors.New("too many interim (1xx) answers")
}

// stripHop deletes from the client's response the hop-by-hop headers of
// the replica's, and those its Connection header names.
func stripHop(h, from *fasthttp.ResponseHeader) {
	h.ResetConnectionClose() // the replica's connection's matter, not the client's
	hop := false
	for k := range from.All() {
		if isHopName(k) {
			hop = true
			break
		}
	}
	if !hop {
		return
	}
	if conn := from.Peek("Connection"); len(conn) > 0 {
		for v := conn; len(v) > 0; {
			var name []byte
			name, v = cutComma(v)
			switch name = trimSpaceBytes(name); {
			case len(name) == 0, equalFoldBytes(name, "close"), equalFoldBytes(name, "keep-alive"):
			default:
				h.DelBytes(name)
			}
		}
	}
	h.Del("Connection")
	h.ResetConnectionClose() // the replica's connection's matter, not the client's
	for _, k := range fastHopHeaders {
		h.Del(k)
	}
}

// fastBody is a response body on its way from a replica to a client: the
// server reads it and closes it when written or failed.
type fastBody struct {
	g        *Gateway
	rev      *revision
	rep      *replica
	service  time.Duration
	back     *fasthttp.Response // the replica's response, its headers read
	resp     *fasthttp.Response // the client's, which trailers join
	stream   io.Reader
	hc       *fasthttp.HostClient
	cc       any // the pooled connection, of fasthttp's unexported type
	br       *bufio.Reader
	raw      net.Conn
	deadline time.Time // the revision's timeout
	watch    *clientWatch
	conn     net.Conn // the replica's connection, when the body streams
	length   int      // the body's length, negative if not known
	got      int64    // bytes of it read so far
	eof      bool     // the body was read to its end
	cut      bool     // the revision's timeout cut it
}

var fastBodyPool = sync.Pool{New: func() any { return new(fastBody) }}

func (b *fastBody) Read(p []byte) (int, error) {
	n, err := b.stream.Read(p)
	b.got += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		// Trailers came after the body: they go after the client's.
		for k := range b.back.Header.Trailers() {
			if v := b.back.Header.PeekBytes(k); v != nil {
				b.resp.Header.SetBytesKV(k, v)
			}
		}
	case err != nil && (isTimeout(err) || !time.Now().Before(b.deadline)):
		b.cut = true
	}
	return n, err
}

// bodyCopyBuffer is the size of the buffer a body is relayed through,
// either way. fasthttp would copy through its connections' write buffers
// (4 KiB), a read and a write for every 4 KiB of a large body; a read
// this large takes what the socket holds, and a write this large goes
// past the (empty) write buffer to the socket. 32 KiB measured best on
// loopback (docs/benchmarks.md, "Large bodies"): 16, 64 and 128 KiB all
// cost more CPU per byte.
const bodyCopyBuffer = 32 << 10

var bodyCopyPool = sync.Pool{New: func() any { return new([bodyCopyBuffer]byte) }}

// relayBody copies r to w through a buffer of bodyCopyBuffer bytes.
func relayBody(w io.Writer, r io.Reader) (int64, error) {
	buf := bodyCopyPool.Get().(*[bodyCopyBuffer]byte)
	defer bodyCopyPool.Put(buf)
	var written int64
	for {
		n, err := r.Read(buf[:])
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			if m < n {
				return written, io.ErrShortWrite
			}
		}
		switch {
		case err == io.EOF:
			return written, nil
		case err != nil:
			return written, err
		}
	}
}

// copiedBody is a request body that fasthttp's writer takes through
// relayBody (see BodyWriterTo); it reads as the stream it holds.
type copiedBody struct{ io.Reader }

func (b copiedBody) WriteTo(w io.Writer) (int64, error) { return relayBody(w, b.Reader) }
func (copiedBody) SupportsBodyWriteTo() bool            { return true }

// WriteTo relays the body to w (see relayBody). Each read goes through
// Read, so what Read records (the end, trailers, a timeout) is the same
// as when the server reads the body itself. A body of known length that
// runs more than a buffer past what is already read is spliced instead
// (see splice).
func (b *fastBody) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	src := tcpConnOf(b.conn)
	if !ok || src == nil || b.br == nil || b.length-b.br.Buffered() <= bodyCopyBuffer {
		return relayBody(w, b)
	}
	return b.splice(w, rf, src)
}

// testHookSpliced, when set, learns how much of a body splice moved.
var testHookSpliced func(n int64)

// splice passes on what the replica's read buffer holds, through Read,
// and has w take the rest of the body from src, the replica's socket:
// fasthttp's writer hands it to the client's connection
// (countedConn.ReadFrom), where the kernel moves it from one socket to
// the other (splice(2)) without copying it through the gateway. What Read
// would record, splice does: the end, or a timeout that cut the body.
func (b *fastBody) splice(w io.Writer, rf io.ReaderFrom, src *net.TCPConn) (int64, error) {
	var written int64
	if n := b.br.Buffered(); n > 0 {
		buf := bodyCopyPool.Get().(*[bodyCopyBuffer]byte)
		m, err := b.Read(buf[:n])
		if m > 0 {
			k, werr := w.Write(buf[:m])
			written = int64(k)
			if werr != nil {
				err = werr
			}
		}
		bodyCopyPool.Put(buf)
		switch {
		case err == io.EOF:
			return written, nil
		case err != nil:
			return written, err
		}
	}
	rest := io.LimitedReader{R: src, N: int64(b.length) - b.got}
	n, err := rf.ReadFrom(&rest)
	b.got += n
	if testHookSpliced != nil {
		testHookSpliced(n)
	}
	switch {
	case err == nil && rest.N == 0:
		b.eof = true
	case err == nil:
		err = io.ErrUnexpectedEOF // the replica closed before the end
	case isTimeout(err) || !time.Now().Before(b.deadline):
		b.cut = true
	}
	return written + n, err
}

// SupportsBodyWriteTo tells fasthttp that WriteTo may stand in for Read.
func (b *fastBody) SupportsBodyWriteTo() bool { return true }

// Close gives back what the body held: the replica's connection (to the
// pool if the body was read through and the replica keeps it open) and
// the replica's slot, with the service time sample.
func (b *fastBody) Close() error {
	b.closeAt(b.g.now())
	return nil
}

// closeAt is Close with the gateway's clock read at now: relay, which has
// just read it, closes a body it had whole at once.
func (b *fastBody) closeAt(now time.Time) {
	gone := false
	if b.watch != nil {
		// Before the connection may go back to the pool, where the
		// watch must not close it; if it did meanwhile, it is not kept.
		gone = b.watch.disarm()
		b.watch.release()
	}
	// A body without a length (-2) ends with its connection.
	keep := !gone && b.eof && !b.back.ConnectionClose() && b.back.Header.ContentLength() != -2
	_ = b.back.CloseBodyStream()
	fasthttp.ReleaseResponse(b.back)
	if b.hc != nil {
		if b.br != nil {
			b.hc.ReleaseReader(b.br)
		}
		cc := connOf(acquireConn, b.cc)
		if keep {
			// Its deadline is left: the next request on it sets its own.
			b.hc.ReleaseConn(cc)
		} else {
			b.hc.CloseConn(cc)
		}
	} else if b.raw != nil {
		_ = b.raw.Close()
	}
	if b.cut {
		b.g.cutShort(b.rev, b.rep)
	}
	b.rev.release(b.rep, now, b.service)
	*b = fastBody{}
	fastBodyPool.Put(b)
}

// forwardUpgrade forwards a request to switch protocols on a connection
// of its own: on a 101 the client's connection is taken from the server
// and bytes are copied both ways until either side closes, the replica's
// slot held meanwhile; any other answer is relayed and the connection
// closed.
func (x fastExchange) forwardUpgrade(g *Gateway, rev *revision, rep *replica, p *plan, start, armed, deadline time.Time,
	cause error, upgrade string, retryable bool) bool {
	ctx := x.ctx
	dctx, cancel := context.WithDeadline(context.Background(), deadline)
	conn, err := g.cfg.Dial(dctx, "tcp", rep.info.Address)
	cancel()
	if err != nil {
		return x.unconnected(g, rev, rep, p, err, deadline, cause, retryable)
	}
	_ = conn.SetDeadline(deadline)
	bw := bufio.NewWriter(conn)
	err = ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	sent := monoNow()
	back := fasthttp.AcquireResponse()
	br := bufio.NewReader(conn)
	gone := false
	if err == nil {
		back.StreamBody = true
		back.SkipBody = ctx.IsHead()
		if x.watch != nil {
			x.watch.arm(conn)
		}
		err = back.ReadLimitBody(br, 0)
		if x.watch != nil {
			gone = x.watch.disarm()
		}
	} else {
		gone = x.clientGone()
	}
	done := monoNow()
	if gone {
		fasthttp.ReleaseResponse(back)
		_ = conn.Close()
		g.unanswered(rev, rep, p, g.now(), errClientGone, nil, true)
		return false
	}
	if err != nil {
		fasthttp.ReleaseResponse(back)
		_ = conn.Close()
		var timedOut error
		if isTimeout(err) || !time.Now().Before(deadline) {
			timedOut = cause
		}
		if code, msg := g.unanswered(rev, rep, p, g.now(), err, timedOut, false); code != 499 {
			fastError(&ctx.Response, code, msg)
		}
		return false
	}
	if back.StatusCode() != http.StatusSwitchingProtocols {
		x.relay(g, rev, rep, p, start, armed, sent, done, back, nil, nil, nil, conn)
		return false
	}
	service := p.service(sent, done)
	switchedTo := back.Header.Peek("Upgrade")
	if !equalFoldBytes(switchedTo, upgrade) {
		msg := "kantai: replica switched to protocol " + strconv.Quote(string(switchedTo)) + ", the client asked for " + strconv.Quote(upgrade)
		fasthttp.ReleaseResponse(back)
		_ = conn.Close()
		g.answered(rev, rep, p, http.StatusBadGateway, start, g.now())
		rev.release(rep, g.now(), service)
		fastError(&ctx.Response, http.StatusBadGateway, msg)
		return false
	}
	g.switched(rev, rep)
	_ = conn.SetDeadline(time.Time{})
	var out fasthttp.ResponseHeader
	back.Header.CopyTo(&out)
	stripHop(&out, &back.Header)
	out.Set("Connection", "Upgrade")
	out.SetBytesV("Upgrade", switchedTo)
	out.Set(HeaderReplica, rep.header[0])
	out.Set(HeaderNode, rep.nodeHeader[0])
	head := append([]byte(nil), out.Header()...)
	fasthttp.ReleaseResponse(back)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer func() { rev.release(rep, g.now(), service) }()
		defer conn.Close()
		if _, err := client.Write(head); err != nil {
			return
		}
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(conn, client); done <- struct{}{} }()
		go func() { _, _ = io.Copy(client, br); done <- struct{}{} }() // bytes read ahead first
		<-done
		// One side is gone: closing both ends the other copy.
		_ = client.Close()
		_ = conn.Close()
		<-done
	})
	return false
}
