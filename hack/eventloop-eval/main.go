//go:build linux

// Command eventloop-eval is a bare HTTP/1.1 reverse proxy on one goroutine
// that owns an epoll instance, kept out of kantai's module: it exists to
// measure what an event loop would give the gateway over a goroutine per
// connection (kantai bench proxy --external), nothing more. A socket is read
// only once epoll has reported it readable and written with raw system calls,
// as nginx does; no goroutine parks and no read finds an empty socket.
//
// It forwards what the proxy bench sends: requests with no body or a
// Content-Length body that fits its 16 KiB buffer, answers with a
// Content-Length (or none, for 204 and 304) that fit it too. Anything else
// is answered 501 or 502 and the connection closed. It sets the gateway's
// forwarding headers (X-Forwarded-For/-Proto/-Host) and answer headers, and
// drops hop-by-hop headers, so that the backend and the client see what
// they see behind the gateway. It has none of the gateway's other features
// (routing, policy, accounting, metrics, timeouts): its figures bound what
// an event-loop gateway could reach, from below.
//
// It speaks the protocol of kantai bench proxy's children: the backend's
// address in KANTAI_PROXYBENCH_BACKEND, "proxybench-listening ADDR" on
// standard output once listening, exit when standard input closes.
//
//	cd hack/eventloop-eval && go build -o /tmp/eventloop-eval .
//	bin/kantai bench proxy --external "eventloop=/tmp/eventloop-eval"
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

const bufSize = 16 << 10

type conn struct {
	fd      int
	backend bool
	in      []byte // what was read and not yet used
	out     []byte // what waits to be written
	off     int    // how much of out is written
	// readable: epoll reported data (or an end) that no read has taken
	// yet. Edge-triggered, so the loop must remember it.
	readable   bool
	hup        bool
	peer       *conn // the other end of the exchange in flight
	ip         string
	reqLen     int  // bytes of in that belong to the request in flight
	closeEnd   bool // close the client once its answer is out
	dead       bool
	connecting bool
}

type loop struct {
	ep      int
	lfd     int
	conns   []*conn // by descriptor
	idle    []*conn // backend connections to reuse, last in first out
	backend syscall.SockaddrInet4
	events  []syscall.EpollEvent
}

func main() {
	addr, err := netip.ParseAddrPort(os.Getenv("KANTAI_PROXYBENCH_BACKEND"))
	if err != nil || !addr.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "eventloop-eval: KANTAI_PROXYBENCH_BACKEND must be an IPv4 address:port:", err)
		os.Exit(2)
	}
	l, err := newLoop(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventloop-eval:", err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if err := l.run(); err != nil {
		fmt.Fprintln(os.Stderr, "eventloop-eval:", err)
		os.Exit(1)
	}
}

func newLoop(backend netip.AddrPort) (*loop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	_ = syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(lfd, 1024); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(lfd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return nil, fmt.Errorf("epoll add: %w", err)
	}
	in4 := sa.(*syscall.SockaddrInet4)
	fmt.Printf("proxybench-listening 127.0.0.1:%d\n", in4.Port)
	return &loop{
		ep: ep, lfd: lfd,
		backend: syscall.SockaddrInet4{Addr: backend.Addr().As4(), Port: int(backend.Port())},
		events:  make([]syscall.EpollEvent, 256),
	}, nil
}

// wait asks epoll without blocking first, as a raw call (no scheduler
// hand-off), and blocks through the runtime only when nothing is ready.
func (l *loop) wait() (int, error) {
	p := unsafe.Pointer(&l.events[0])
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(p), uintptr(len(l.events)), 0, 0, 0)
	if e != 0 && e != syscall.EINTR {
		return 0, e
	}
	if n > 0 {
		return int(n), nil
	}
	k, err := syscall.EpollWait(l.ep, l.events, -1)
	if errors.Is(err, syscall.EINTR) {
		return 0, nil
	}
	return k, err
}

func (l *loop) run() error {
	const inFlags = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
	for {
		n, err := l.wait()
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for i := 0; i < n; i++ {
			ev := l.events[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			c := l.conn(fd)
			if c == nil {
				continue
			}
			if ev.Events&inFlags != 0 {
				c.readable = true
				if ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
					c.hup = true
				}
			}
			if ev.Events&syscall.EPOLLOUT != 0 && !c.dead {
				l.writable(c)
			}
			if c.readable && !c.dead {
				if c.backend {
					l.backendReadable(c)
				} else {
					l.clientReadable(c)
				}
			}
		}
	}
}

func (l *loop) conn(fd int) *conn {
	if fd < len(l.conns) {
		return l.conns[fd]
	}
	return nil
}

func (l *loop) add(c *conn) {
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*conn, len(l.conns)+64)...)
	}
	l.conns[c.fd] = c
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | -syscall.EPOLLET, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		fmt.Fprintln(os.Stderr, "eventloop-eval: epoll add:", err)
		l.close(c)
	}
}

func (l *loop) close(c *conn) {
	if c.dead {
		return
	}
	c.dead = true
	l.conns[c.fd] = nil
	_ = syscall.Close(c.fd) // also leaves the epoll set
}

func (l *loop) accept() {
	for {
		fd, sa, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: none left; anything else: try at the next event
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		c := &conn{fd: fd, in: make([]byte, 0, bufSize)}
		if in4, ok := sa.(*syscall.SockaddrInet4); ok {
			c.ip = netip.AddrFrom4(in4.Addr).String()
		}
		l.add(c)
	}
}

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// fill reads once into c.in's free space. A short read means the socket
// was empty when it returned, so readable is cleared: the next edge sets it.
// It returns false when the peer has gone (or the buffer is full).
func fill(c *conn) (ok bool) {
	free := c.in[len(c.in):cap(c.in)]
	if len(free) == 0 {
		return false
	}
	n, e := rawRead(c.fd, free)
	switch {
	case e == syscall.EAGAIN:
		c.readable = false
		return !c.hup
	case e != 0, n == 0:
		return false
	}
	c.in = c.in[:len(c.in)+n]
	if n < len(free) {
		c.readable = false
	}
	return true
}

// flush writes what waits in c.out; false means it waits for EPOLLOUT.
func (l *loop) flush(c *conn) (done bool, err error) {
	for c.off < len(c.out) {
		n, e := rawWrite(c.fd, c.out[c.off:])
		if e == syscall.EAGAIN {
			return false, nil
		}
		if e != 0 {
			return false, e
		}
		c.off += n
	}
	c.out, c.off = c.out[:0], 0
	return true, nil
}

func (l *loop) writable(c *conn) {
	if c.connecting {
		c.connecting = false
		if v, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || v != 0 {
			l.backendFailed(c)
			return
		}
	}
	if len(c.out) == 0 {
		return
	}
	done, err := l.flush(c)
	switch {
	case err != nil && c.backend:
		l.backendFailed(c)
	case err != nil:
		l.dropClient(c)
	case done && !c.backend:
		l.answered(c)
	}
}

func (l *loop) clientReadable(c *conn) {
	if c.peer != nil || len(c.out) > 0 {
		return // a request is in flight: what came behind it waits
	}
	if !fill(c) {
		l.dropClient(c)
		return
	}
	l.dispatch(c)
}

// dispatch starts the request at the front of c.in, if it is all there.
func (l *loop) dispatch(c *conn) {
	end := bytes.Index(c.in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(c.in) == cap(c.in) {
			l.refuse(c, "431 Request Header Fields Too Large")
		} else if c.hup && !c.readable {
			l.dropClient(c)
		}
		return
	}
	head := c.in[:end+2]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	var (
		length   int
		host     []byte
		xff      []byte
		chunked  bool
		closeEnd bool
	)
	b := l.acquire()
	if b == nil {
		l.refuse(c, "502 Bad Gateway")
		return
	}
	out := append(b.out[:0], line...)
	out = append(out, "\r\n"...)
	for len(rest) > 0 {
		h, name, value, tail, ok := nextHeader(rest)
		rest = tail
		if !ok {
			continue
		}
		switch {
		case equalFold(name, "content-length"):
			n, ok := contentLength(value)
			if !ok {
				l.release(b)
				l.refuse(c, "400 Bad Request")
				return
			}
			length = n
		case equalFold(name, "transfer-encoding"):
			chunked = true
			continue
		case equalFold(name, "host"):
			host = value
		case equalFold(name, "x-forwarded-for"):
			xff = value
			continue
		case equalFold(name, "connection"):
			closeEnd = bytes.Contains(bytes.ToLower(value), []byte("close"))
			continue
		case hopByHop(name), equalFold(name, "x-forwarded-proto"), equalFold(name, "x-forwarded-host"):
			continue
		}
		out = append(out, h...)
		out = append(out, "\r\n"...)
	}
	if chunked {
		l.release(b)
		l.refuse(c, "501 Not Implemented")
		return
	}
	total := end + 4 + length
	if total > cap(c.in) {
		l.release(b)
		l.refuse(c, "413 Content Too Large")
		return
	}
	if len(c.in) < total {
		l.release(b)
		if c.readable {
			l.clientReadable(c)
		}
		return
	}
	out = append(out, "X-Forwarded-For: "...)
	if len(xff) > 0 {
		out = append(append(out, xff...), ", "...)
	}
	out = append(out, c.ip...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "...)
	out = append(out, host...)
	out = append(out, "\r\n\r\n"...)
	out = append(out, c.in[end+4:total]...)
	b.out, b.off = out, 0
	c.reqLen, c.closeEnd = total, closeEnd
	c.peer, b.peer = b, c
	if b.connecting {
		return // written once the connection is up
	}
	if _, err := l.flush(b); err != nil {
		l.backendFailed(b)
	}
}

func (l *loop) acquire() *conn {
	for len(l.idle) > 0 {
		b := l.idle[len(l.idle)-1]
		l.idle = l.idle[:len(l.idle)-1]
		if !b.dead {
			return b
		}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	b := &conn{fd: fd, backend: true, in: make([]byte, 0, bufSize)}
	switch err := syscall.Connect(fd, &l.backend); {
	case err == nil:
	case errors.Is(err, syscall.EINPROGRESS):
		b.connecting = true
	default:
		_ = syscall.Close(fd)
		return nil
	}
	l.add(b)
	if b.dead {
		return nil
	}
	return b
}

// release puts an unused backend connection back.
func (l *loop) release(b *conn) {
	b.out, b.off, b.peer = b.out[:0], 0, nil
	l.idle = append(l.idle, b)
}

func (l *loop) backendReadable(b *conn) {
	c := b.peer
	if c == nil {
		// Idle: the backend closed it (or sent what nobody asked for).
		l.close(b)
		return
	}
	if !fill(b) {
		l.backendFailed(b)
		return
	}
	end := bytes.Index(b.in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b.in) == cap(b.in) {
			l.backendFailed(b)
		}
		return
	}
	head := b.in[:end+2]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	length, framed, keep := 0, false, true
	out := append(c.out[:0], line...)
	out = append(out, "\r\n"...)
	for len(rest) > 0 {
		h, name, value, tail, ok := nextHeader(rest)
		rest = tail
		if !ok {
			continue
		}
		switch {
		case equalFold(name, "content-length"):
			n, ok := contentLength(value)
			if !ok {
				l.backendFailed(b)
				return
			}
			length, framed = n, true
		case equalFold(name, "connection"):
			keep = !bytes.Contains(bytes.ToLower(value), []byte("close"))
			continue
		case hopByHop(name):
			continue
		}
		out = append(out, h...)
		out = append(out, "\r\n"...)
	}
	status := 0
	if len(line) >= 12 {
		status, _ = strconv.Atoi(string(line[9:12]))
	}
	if !framed && status != 204 && status != 304 {
		l.backendFailed(b) // chunked or read-to-close: not forwarded here
		return
	}
	total := end + 4 + length
	if total > cap(b.in) {
		l.backendFailed(b)
		return
	}
	if len(b.in) < total {
		return // the rest of the body comes with the next edge
	}
	if c.closeEnd {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "X-Kantai-Replica: bench-replica\r\nX-Kantai-Node: bench-node\r\n\r\n"...)
	out = append(out, b.in[end+4:total]...)
	c.out, c.off = out, 0
	extra := len(b.in) > total
	b.in = b.in[:0]
	if keep && !extra {
		l.release(b)
	} else {
		b.peer = nil
		l.close(b)
	}
	c.peer = nil
	done, err := l.flush(c)
	switch {
	case err != nil:
		l.dropClient(c)
	case done:
		l.answered(c)
	}
}

// answered moves the client on once its answer is written: the next
// request it pipelined, or a read if epoll has reported one.
func (l *loop) answered(c *conn) {
	if c.closeEnd {
		l.dropClient(c)
		return
	}
	n := copy(c.in, c.in[c.reqLen:])
	c.in, c.reqLen = c.in[:n], 0
	if n > 0 {
		l.dispatch(c)
		return
	}
	if c.readable {
		l.clientReadable(c)
	}
}

func (l *loop) backendFailed(b *conn) {
	c := b.peer
	b.peer = nil
	l.close(b)
	if c != nil && !c.dead {
		c.peer = nil
		l.refuse(c, "502 Bad Gateway")
	}
}

// refuse answers with a status and closes the client once it is written.
func (l *loop) refuse(c *conn, status string) {
	c.out = append(c.out[:0], "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"...)
	c.off, c.closeEnd = 0, true
	done, err := l.flush(c)
	if err != nil || done {
		l.dropClient(c)
	}
}

func (l *loop) dropClient(c *conn) {
	if b := c.peer; b != nil {
		b.peer = nil
		l.close(b) // its answer has nowhere to go
	}
	c.peer = nil
	l.close(c)
}

// nextHeader cuts the first header line off rest: the line as received,
// its name and its value trimmed; ok is false for a line with no colon.
func nextHeader(rest []byte) (h, name, value, tail []byte, ok bool) {
	h, tail, _ = bytes.Cut(rest, []byte("\r\n"))
	name, value, ok = bytes.Cut(h, []byte(":"))
	return h, name, bytes.TrimSpace(value), tail, ok
}

func contentLength(value []byte) (int, bool) {
	n, err := strconv.Atoi(string(value))
	return n, err == nil && n >= 0
}

var hop = []string{"keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "upgrade"}

func hopByHop(name []byte) bool {
	for _, h := range hop {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// equalFold compares an ASCII header name with a lower-case one.
func equalFold(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lower[i] {
			return false
		}
	}
	return true
}
