package linkemu

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Link is an emulated network path, the same in both directions.
type Link struct {
	// RTT is the mean round-trip time.
	RTT time.Duration
	// Jitter is the standard deviation of the round-trip time. Each
	// direction draws its one-way delay from a normal distribution with mean
	// RTT/2 and standard deviation Jitter/√2, clamped at zero, so that a round
	// trip has mean RTT and standard deviation Jitter.
	Jitter time.Duration
	// BytesPerSec is the link's rate in each direction; 0 means unlimited.
	BytesPerSec float64
}

// IsZero reports whether the link adds nothing to a plain connection.
func (l Link) IsZero() bool { return l.RTT <= 0 && l.Jitter <= 0 && l.BytesPerSec <= 0 }

// sampler draws delays for one link; it is shared by both directions of a
// connection, hence the mutex. It reads the link's parameters at every
// draw, so a link changed while connections are open applies to the bytes
// sent from then on.
type sampler struct {
	mu   sync.Mutex
	rng  *rand.Rand
	link func() Link
}

func newSampler(l Link, rng *rand.Rand) *sampler {
	return newLiveSampler(func() Link { return l }, rng)
}

func newLiveSampler(link func() Link, rng *rand.Rand) *sampler {
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &sampler{rng: rng, link: link}
}

func (s *sampler) oneWay() time.Duration {
	l := s.link()
	mean := float64(max(l.RTT, 0)) / 2 // one-way, nanoseconds
	sd := float64(max(l.Jitter, 0)) / math.Sqrt2
	if sd == 0 {
		return time.Duration(mean)
	}
	s.mu.Lock()
	x := s.rng.NormFloat64()
	s.mu.Unlock()
	return time.Duration(max(mean+x*sd, 0))
}

func (s *sampler) rate() float64 { return s.link().BytesPerSec }

// roundTrip draws a round trip as two independent one-way delays.
func (s *sampler) roundTrip() time.Duration { return s.oneWay() + s.oneWay() }

// linger bounds how long a closed connection keeps delivering the data it
// still had in flight before it is torn down.
const linger = 5 * time.Second

var (
	errClosing   = errors.New("linkemu: closing")         // writer: flush, then close
	errFIN       = errors.New("linkemu: write side shut") // writer: flush, then CloseWrite
	errWriteShut = errors.New("write after CloseWrite")
	longAgo      = time.Unix(1, 0)
)

// conn is a net.Conn whose traffic crosses an emulated link. Two goroutines
// move the bytes: readLoop takes them off the network as they come and
// queues them until due; writeLoop sends queued writes when they are due.
type conn struct {
	c         net.Conn
	rp, wp    *pipe
	closing   chan struct{}
	closeOnce sync.Once
	onClose   func() // set before the conn is shared; may be nil
}

// Wrap returns a connection whose traffic in both directions crosses the
// link l: every byte written reaches the peer one sampled one-way delay
// later, and every byte the peer sends is held back likewise, in order and at
// most at the link's rate. Wrap owns c from then on. rng drives the jitter;
// nil means a randomly seeded source. The result is safe for one reader and
// one writer at a time, as net/http uses connections, and for Close and the
// deadline setters from any goroutine.
//
// Closing the result hands the data still in flight to the network before
// closing c, unless that would take more than five seconds, in which case
// the data is dropped; Read and Write fail at once. The
// result also has CloseWrite, which shuts the writing side after the queued
// data, if c has one.
func Wrap(c net.Conn, l Link, rng *rand.Rand) net.Conn {
	return wrap(c, newSampler(l, rng))
}

func wrap(c net.Conn, s *sampler) *conn {
	w := &conn{
		c:       c,
		rp:      newPipe(s.rate, s.oneWay),
		wp:      newPipe(s.rate, s.oneWay),
		closing: make(chan struct{}),
	}
	go w.readLoop()
	go w.writeLoop()
	return w
}

func (w *conn) readLoop() {
	for {
		if w.rp.waitRoom() != nil {
			return
		}
		buf := getBuf(maxChunk)
		n, err := w.c.Read(*buf)
		if n > 0 {
			if w.rp.putOwned(buf, n, time.Now()) != nil {
				return
			}
		} else {
			putBuf(buf)
		}
		if err != nil {
			w.rp.finish(err, err, true)
			return
		}
	}
}

func (w *conn) writeLoop() {
	defer w.c.Close()
	for {
		ch, err := w.wp.next()
		if err != nil {
			if err == errFIN {
				if cw, ok := w.c.(interface{ CloseWrite() error }); ok {
					if cw.CloseWrite() == nil {
						<-w.closing
					}
				}
			}
			return
		}
		_, err = w.c.Write((*ch.buf)[ch.off:ch.n])
		putBuf(ch.buf)
		if err != nil {
			w.wp.abort(err)
			return
		}
	}
}

func (w *conn) opError(op string, err error) error {
	if err == errTimeout || err == net.ErrClosed || err == errWriteShut || err == ErrUnreachable {
		return &net.OpError{Op: op, Net: w.c.LocalAddr().Network(), Source: w.c.LocalAddr(), Addr: w.c.RemoteAddr(), Err: err}
	}
	return err
}

func (w *conn) Read(b []byte) (int, error) {
	n, err := w.rp.read(b)
	if err != nil && err != io.EOF {
		err = w.opError("read", err)
	}
	return n, err
}

func (w *conn) Write(b []byte) (int, error) {
	n, err := w.wp.put(b)
	if err != nil {
		err = w.opError("write", err)
	}
	return n, err
}

// Close stops reads and writes at once. Data already written still reaches
// the peer at its delivery time, then the connection closes.
func (w *conn) Close() error {
	err := w.opError("close", net.ErrClosed)
	w.closeOnce.Do(func() {
		err = nil
		w.rp.abort(net.ErrClosed)
		_ = w.c.SetReadDeadline(longAgo) // unblocks readLoop
		end := time.Now().Add(linger)
		if w.wp.lastDelivery().After(end) {
			// What is in flight cannot all arrive in time: drop it.
			w.wp.abort(net.ErrClosed)
		} else if !w.wp.finish(net.ErrClosed, errClosing, false) {
			w.wp.stopProducer(net.ErrClosed)
		}
		w.wp.setGetDeadline(end)
		_ = w.c.SetWriteDeadline(end)
		close(w.closing)
		if w.onClose != nil {
			w.onClose()
		}
	})
	return err
}

// sever breaks the connection as a cut cable would: what is in flight is
// lost, and reads and writes fail with ErrUnreachable from now on. The
// peer sees its connection reset.
func (w *conn) sever() {
	w.rp.abort(ErrUnreachable)
	w.wp.abort(ErrUnreachable)
	if tc, ok := w.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset, as a peer that vanished would be noticed
	}
	_ = w.c.SetReadDeadline(longAgo)
	_ = w.c.Close()
}

// CloseWrite shuts the writing side once the data already written has
// crossed the link; the peer then reads EOF. Reading goes on.
func (w *conn) CloseWrite() error {
	if _, ok := w.c.(interface{ CloseWrite() error }); !ok {
		return &net.OpError{Op: "close", Net: w.c.LocalAddr().Network(), Source: w.c.LocalAddr(), Addr: w.c.RemoteAddr(), Err: errors.ErrUnsupported}
	}
	if !w.wp.finish(errWriteShut, errFIN, true) {
		return w.opError("close", net.ErrClosed)
	}
	return nil
}

func (w *conn) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *conn) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

func (w *conn) SetDeadline(t time.Time) error {
	w.rp.setGetDeadline(t)
	w.wp.setPutDeadline(t)
	return nil
}

func (w *conn) SetReadDeadline(t time.Time) error {
	w.rp.setGetDeadline(t)
	return nil
}

func (w *conn) SetWriteDeadline(t time.Time) error {
	w.wp.setPutDeadline(t)
	return nil
}
