package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
// which a moment after a request is always empty. A client's connection
// holds an answer back the same way (see holdAnswer), with one difference:
// a client may pipeline, and a request it sent before the answer went out
// is in the socket already, its readiness forgotten. So the wait after a
// held answer is bounded by answerProbe; when that passes, the socket is
// tried.
type sockConn struct {
	net.Conn // a *net.TCPConn
	rc       syscall.RawConn

	hold atomic.Bool // writes go to held until the next read
	hmu  sync.Mutex  // guards held
	held []byte      // a request (or answer) not yet sent; owned by Read while it sends

	// probe marks what is held as an answer to a client (holdAnswer);
	// pipelines, a client found to pipeline, whose answers are not held.
	probe, pipelines atomic.Bool
	// probing: the read deadline is answerProbe's, not the one last set
	// (rd); the next read, or a deadline set, replaces it.
	probing atomic.Bool
	dmu     sync.Mutex // guards rd and the setting of read deadlines
	rd      time.Time

	rmu    sync.Mutex // one read at a time: the fields below are its state
	p      []byte
	out    []byte // held bytes the read sends first
	sent   int
	n      int
	errno  syscall.Errno
	sendOp bool // errno came from sending out
	eof    bool
	waited bool // a step reported the socket empty
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // one write at a time: the fields below are its state
	wp      []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// maxHeld bounds a held request; a longer one is sent as it is written.
const maxHeld = 16 << 10

// answerProbe bounds the wait, without a try, for a client's next request
// after a held answer; then the socket is tried once and the wait goes
// on under the deadline last set. A client that pipelines waits this long
// at most once per connection: its answers are not held after that. An
// idle keep-alive connection is woken once.
const answerProbe = 20 * time.Millisecond

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

// holdAnswer has a client's conn hold an answer written to it until it is
// next read, if it is a sockConn (also inside a countedConn) whose client
// has not been seen to pipeline. The caller's server writes a whole answer
// and then reads for the next request (or closes conn, which sends it).
func holdAnswer(conn net.Conn) {
	if cc, ok := conn.(*countedConn); ok {
		conn = cc.Conn
	}
	if c, ok := conn.(*sockConn); ok && !c.pipelines.Load() {
		c.probe.Store(true)
		c.hold.Store(true)
	}
}

// sendHeld sends an answer held by conn, if any, and holds no more: a
// server about to write otherwise than through Write (a splice), or
// serving a request read from its buffer, where no read would send it.
func sendHeld(conn net.Conn) error {
	if cc, ok := conn.(*countedConn); ok {
		conn = cc.Conn
	}
	c, ok := conn.(*sockConn)
	if !ok || !c.hold.Load() {
		return nil
	}
	c.hold.Store(false)
	c.probe.Store(false)
	c.hmu.Lock()
	held := c.held
	c.held = nil
	c.hmu.Unlock()
	if c.probing.Load() {
		c.unprobe()
	}
	_, err := c.write(held)
	return err
}

func (c *sockConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// SetReadDeadline sets t, or answerProbe's bound in its place when an
// answer is held and t is later (what Read does when the bound passes).
func (c *sockConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rd = t
	probing := false
	if c.probe.Load() {
		if p := monoNow().Add(answerProbe); t.IsZero() || t.After(p) {
			t, probing = p, true
		}
	}
	c.probing.Store(probing)
	return c.Conn.SetReadDeadline(t)
}

func (c *sockConn) SetDeadline(t time.Time) error {
	if c.probe.Load() {
		return errors.Join(c.SetReadDeadline(t), c.Conn.SetWriteDeadline(t))
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rd = t
	c.probing.Store(false)
	return c.Conn.SetDeadline(t) // one call for both
}

// unprobe puts back the read deadline last set, if answerProbe's is in
// its place, and reports whether that deadline is still ahead.
func (c *sockConn) unprobe() (ahead bool) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.probing.Swap(false) {
		_ = c.Conn.SetReadDeadline(c.rd)
	}
	return c.rd.IsZero() || time.Now().Before(c.rd)
}

// probeDeadline sets answerProbe's bound for a read about to send a held
// answer, unless a deadline set since holdAnswer did (SetReadDeadline).
func (c *sockConn) probeDeadline() {
	if c.probing.Load() {
		return
	}
	c.dmu.Lock()
	if p := monoNow().Add(answerProbe); c.rd.IsZero() || c.rd.After(p) {
		c.probing.Store(true)
		_ = c.Conn.SetReadDeadline(p)
	}
	c.dmu.Unlock()
}

// closeSendWait bounds Close's wait for room to send a held answer.
var closeSendWait = time.Second

// Close sends a held answer first, waiting up to closeSendWait for room
// in the socket: the answer's request was served, and a server closing a
// connection it believes idle must not lose it.
func (c *sockConn) Close() error {
	if c.probe.Load() && c.hold.Load() {
		c.hmu.Lock()
		held := c.held
		c.held = nil
		c.hmu.Unlock()
		if len(held) > 0 {
			var off int
			_ = c.rc.Write(func(fd uintptr) bool {
				_ = sendRest(fd, held, &off)
				return true
			})
			if off < len(held) {
				// The socket's buffer is full: wait for room a while, as
				// the server would have had it written the answer itself.
				_ = c.Conn.SetWriteDeadline(time.Now().Add(closeSendWait))
				_, _ = c.write(held[off:])
			}
		}
	}
	return c.Conn.Close()
}

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
	// Too long to hold: what is held goes first, then this. Nothing is
	// held for the next read, so its deadline needs no probe.
	c.hold.Store(false)
	c.probe.Store(false)
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
	answer := false
	if c.hold.Load() {
		c.hold.Store(false)
		c.hmu.Lock()
		out = c.held
		c.held = nil
		c.hmu.Unlock()
		answer = c.probe.Swap(false)
	}
	if answer && len(out) > 0 {
		c.probeDeadline()
	} else if c.probing.Load() {
		c.unprobe() // a read past the one answerProbe was set for
	}

	c.rmu.Lock()
	c.p, c.out, c.sent, c.n, c.errno, c.sendOp, c.eof, c.waited = p, out, 0, 0, 0, false, false, false
	err := c.rc.Read(c.readFn)
	if err != nil && c.probing.Load() && errors.Is(err, os.ErrDeadlineExceeded) && c.unprobe() {
		// answerProbe passed, the deadline set has not: the client may
		// have pipelined its next request before the answer went out.
		// Try the socket (after sending the answer, if the deadline came
		// before it went) and wait on.
		c.waited = false
		err = c.rc.Read(c.readFn)
		if err == nil && c.errno == 0 && !c.waited && c.n > 0 {
			c.pipelines.Store(true)
		}
	}
	var werr error
	if err == nil && c.errno == 0 && c.sent < len(out) {
		// The socket's buffer filled: the rest of the request goes by a
		// write that waits for room, and then the answer is read for.
		if _, werr = c.write(out[c.sent:]); werr == nil {
			c.sent = len(out)
			if c.probing.Load() {
				// This read tries the socket before it waits: no
				// readiness can be lost, so the deadline is the one set,
				// however long the write waited for room.
				c.unprobe()
			}
			err = c.rc.Read(c.readFn)
		}
	}
	if answer && werr == nil && c.errno == 0 && c.sent < len(out) {
		// The read ended before the answer went (a deadline passed):
		// it is held again, for Close to send.
		c.hmu.Lock()
		c.held = out[c.sent:]
		c.hmu.Unlock()
		c.probe.Store(true)
		c.hold.Store(true)
		out = nil
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
			c.waited = true
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
			c.waited = true
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
