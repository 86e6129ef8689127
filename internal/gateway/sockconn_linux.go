package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// sockConn is a TCP connection whose reads and writes make their system
// calls raw, through the poller's own interface (syscall.RawConn): the
// poller still waits for readiness and keeps the deadlines, as it does
// for net's connections.
//
// Why raw: an ordinary system call tells the runtime it is entering one,
// so that a call that blocks can have its processor handed on; and the
// first such call after the process went idle wakes the runtime's
// monitor thread, which then polls every 20 µs for a millisecond before
// it backs off. A gateway under load goes idle between bursts of
// requests all the time, and without those wake-ups it spends a fifth
// less CPU per request (docs/benchmarks.md, "Raw system calls"). A read
// or write of a non-blocking socket returns at once: there is nothing to
// hand on. What is lost: a thread the kernel preempts inside such a call
// keeps its processor meanwhile, as it does in any other code.
//
// A replica's connection also holds a request back (see holdRequest) and
// sends it from the read that awaits the answer, in one step with the
// wait: Go's poller forgets a socket's readiness whenever a read begins,
// so a read begun after the request went out must first try the socket,
// which a moment after a request is always empty.
type sockConn struct {
	net.Conn // a *net.TCPConn
	rc       syscall.RawConn

	hold atomic.Bool // writes go to held until the next read
	hmu  sync.Mutex  // guards held
	held []byte      // a request not yet sent; owned by Read while it sends

	rmu    sync.Mutex // one read at a time: the fields below are its state
	p      []byte
	out    []byte // held bytes the read sends first
	sent   int
	n      int
	errno  syscall.Errno
	sendOp bool // errno came from sending out
	eof    bool
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // one write at a time: the fields below are its state
	wp      []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// maxHeld bounds a held request; a longer one is sent as it is written.
const maxHeld = 16 << 10

// sockConnOf returns conn as a sockConn when it is a TCP socket and raw
// system calls are on (EnvSyscalls), else conn.
func sockConnOf(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok || !rawSyscalls() {
		return conn
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &sockConn{Conn: tc, rc: rc}
	c.readFn, c.writeFn = c.readStep, c.writeStep
	return c
}

// holdRequest has conn hold what is written to it until it is next read,
// if it is a sockConn. The caller writes a whole request and then reads
// its answer.
func holdRequest(conn net.Conn) {
	if c, ok := conn.(*sockConn); ok {
		c.hold.Store(true)
	}
}

func (c *sockConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// tcpConnOf returns the TCP socket conn is or holds (a sockConn), or nil.
func tcpConnOf(conn net.Conn) *net.TCPConn {
	switch c := conn.(type) {
	case *net.TCPConn:
		return c
	case *sockConn:
		return c.Conn.(*net.TCPConn)
	}
	return nil
}

// CloseWrite half-closes the connection (see countedConn.CloseWrite).
func (c *sockConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// opError is err as net's connections report it. The poller's errors
// (deadline, closed) come from the RawConn as a "raw-read" or
// "raw-write" OpError: what it holds is kept, under op.
func (c *sockConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *sockConn) Write(p []byte) (int, error) {
	if !c.hold.Load() {
		return c.write(p)
	}
	c.hmu.Lock()
	if len(c.held)+len(p) <= maxHeld {
		c.held = append(c.held, p...)
		c.hmu.Unlock()
		return len(p), nil
	}
	// Too long to hold: what is held goes first, then this.
	c.hold.Store(false)
	held := c.held
	c.held = nil
	c.hmu.Unlock()
	if _, err := c.write(held); err != nil {
		return 0, err
	}
	return c.write(p)
}

func (c *sockConn) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wp = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// writeStep writes what is left of wp; it reports whether the write is
// done (all written, or failed) rather than to wait until writable.
func (c *sockConn) writeStep(fd uintptr) bool {
	switch errno := sendRest(fd, c.wp, &c.wn); errno {
	case 0:
	case syscall.EAGAIN:
		return false
	default:
		c.werrno = errno
	}
	return true
}

// sendRest writes p from *off on until it is all written, the socket is
// full (EAGAIN) or the write fails, moving *off on by what was written.
func sendRest(fd uintptr, p []byte, off *int) syscall.Errno {
	for *off < len(p) {
		n, errno := rawWrite(fd, p[*off:])
		switch errno {
		case 0:
			*off += n
		case syscall.EINTR:
		default:
			return errno
		}
	}
	return 0
}

func (c *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var out []byte
	if c.hold.Load() {
		c.hold.Store(false)
		c.hmu.Lock()
		out = c.held
		c.held = nil
		c.hmu.Unlock()
	}

	c.rmu.Lock()
	c.p, c.out, c.sent, c.n, c.errno, c.sendOp, c.eof = p, out, 0, 0, 0, false, false
	err := c.rc.Read(c.readFn)
	var werr error
	if err == nil && c.errno == 0 && c.sent < len(out) {
		// The socket's buffer filled: the rest of the request goes by a
		// write that waits for room, and then the answer is read for.
		if _, werr = c.write(out[c.sent:]); werr == nil {
			c.out = nil
			err = c.rc.Read(c.readFn)
		}
	}
	n, errno, sendOp, eof := c.n, c.errno, c.sendOp, c.eof
	c.p, c.out = nil, nil
	c.rmu.Unlock()
	if out != nil && cap(out) <= maxHeld {
		c.hmu.Lock()
		if c.held == nil {
			c.held = out[:0] // its buffer serves the next request
		}
		c.hmu.Unlock()
	}
	switch {
	case werr != nil:
		return 0, werr // already a write's OpError
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0 && sendOp:
		return 0, c.opError("write", os.NewSyscallError("write", errno))
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case eof:
		return 0, io.EOF
	}
	return n, nil
}

// readStep is the read's function, called by the poller at once and then
// whenever the socket turns readable; it reports whether the read is
// done rather than to wait. With held bytes to send, the first call
// sends them and waits.
func (c *sockConn) readStep(fd uintptr) bool {
	if c.sent < len(c.out) {
		switch errno := sendRest(fd, c.out, &c.sent); errno {
		case 0:
			return false // sent: wait for the answer
		case syscall.EAGAIN:
			return true // Read sends the rest
		default:
			c.errno, c.sendOp = errno, true
			return true
		}
	}
	for {
		n, errno := rawRead(fd, c.p)
		switch errno {
		case 0:
			c.n, c.eof = n, n == 0
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.errno = errno
			return true
		}
	}
}

// rawRead and rawWrite are read(2) and write(2) without the runtime's
// system call bookkeeping; for non-blocking sockets only.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}
