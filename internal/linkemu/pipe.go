package linkemu

import (
	"os"
	"sync"
	"time"
)

// Chunk sizes. A write is cut into chunks of at most maxChunk bytes; each
// chunk gets its own delivery time. Storage comes from three size classes
// so that a small message in flight does not pin a large buffer.
const (
	maxChunk   = 32 << 10
	queueLimit = 4 << 20 // pooled bytes in flight per direction before the producer waits
)

var classes = [...]int{512, 4 << 10, maxChunk}

var pools [len(classes)]sync.Pool

func init() {
	for i, size := range classes {
		pools[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
}

func classOf(n int) int {
	for i, size := range classes {
		if n <= size {
			return i
		}
	}
	return len(classes) - 1
}

func getBuf(n int) *[]byte { return pools[classOf(n)].Get().(*[]byte) }

func putBuf(b *[]byte) {
	for i, size := range classes {
		if len(*b) == size {
			pools[i].Put(b)
			return
		}
	}
}

var errTimeout error = os.ErrDeadlineExceeded

// chunk is a piece of the stream in flight: (*buf)[off:n] reaches the other
// end of the link at time at.
type chunk struct {
	buf    *[]byte
	off, n int
	at     time.Time
}

// pipe is one direction of an emulated link: a queue of chunks, each held
// back until its delivery time. A producer puts, a consumer takes; either
// side may wait, with its own deadline.
type pipe struct {
	mu    sync.Mutex
	q     []chunk
	used  int            // pooled bytes held by q
	rate  func() float64 // bytes per second; 0 means unlimited
	delay func() time.Duration

	busy time.Time // when the link has serialised everything put so far
	last time.Time // latest delivery time handed out; keeps order

	putErr error     // returned to the producer once set
	getErr error     // returned to the consumer once q is empty and endAt has passed
	endAt  time.Time // when getErr becomes visible

	putDeadline time.Time
	getDeadline time.Time

	wake chan struct{} // closed on every change, then replaced lazily
}

func newPipe(rate func() float64, delay func() time.Duration) *pipe {
	return &pipe{rate: rate, delay: delay}
}

// waitLocked releases p.mu until the pipe changes or until is reached (zero
// means no limit), then takes it again. This assumes p.mu is held.
func (p *pipe) waitLocked(until time.Time) {
	if p.wake == nil {
		p.wake = make(chan struct{})
	}
	ch := p.wake
	p.mu.Unlock()
	if until.IsZero() {
		<-ch
	} else if time.Until(until) > 0 {
		due, stop := after(until)
		select {
		case <-ch:
		case <-due:
		}
		stop()
	}
	p.mu.Lock()
}

// signalLocked wakes every waiter. This assumes p.mu is held.
func (p *pipe) signalLocked() {
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// scheduleLocked returns the delivery time of size bytes put at now: they
// leave once the link has serialised what came before them and themselves,
// travel for one sampled one-way delay, and never overtake earlier bytes.
func (p *pipe) scheduleLocked(now time.Time, size int) time.Time {
	start := now
	if p.busy.After(start) {
		start = p.busy
	}
	if bw := p.rate(); bw > 0 {
		start = start.Add(time.Duration(float64(size) / bw * float64(time.Second)))
	}
	p.busy = start
	at := start.Add(p.delay())
	if at.Before(p.last) {
		at = p.last
	}
	p.last = at
	return at
}

func (p *pipe) pushLocked(buf *[]byte, n int, now time.Time) {
	p.q = append(p.q, chunk{buf: buf, n: n, at: p.scheduleLocked(now, n)})
	p.used += len(*buf)
	p.signalLocked()
}

func (p *pipe) popLocked() chunk {
	c := p.q[0]
	p.q[0] = chunk{}
	p.q = p.q[1:]
	if len(p.q) == 0 {
		p.q = p.q[:0:0]
	}
	p.used -= len(*c.buf)
	return c
}

func expired(deadline, now time.Time) bool {
	return !deadline.IsZero() && !now.Before(deadline)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// put copies b into the pipe, waiting for room while more than queueLimit
// bytes are in flight. It is the application's Write.
func (p *pipe) put(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for {
		if p.putErr != nil {
			return n, p.putErr
		}
		if len(b) == 0 {
			return n, nil
		}
		now := time.Now()
		if expired(p.putDeadline, now) {
			return n, errTimeout
		}
		size := min(len(b), maxChunk)
		if p.used > 0 && p.used+classes[classOf(size)] > queueLimit {
			p.waitLocked(p.putDeadline)
			continue
		}
		buf := getBuf(size)
		copy(*buf, b[:size])
		p.pushLocked(buf, size, now)
		b = b[size:]
		n += size
	}
}

// waitRoom blocks until the pipe has room for another chunk, or returns the
// error that stops the producer.
func (p *pipe) waitRoom() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.putErr == nil && p.used >= queueLimit {
		p.waitLocked(time.Time{})
	}
	return p.putErr
}

// putOwned queues (*buf)[:n], read from the network at now, taking
// ownership of buf. Small reads move to a smaller buffer.
func (p *pipe) putOwned(buf *[]byte, n int, now time.Time) error {
	if classOf(n) != classOf(len(*buf)) {
		small := getBuf(n)
		copy(*small, (*buf)[:n])
		putBuf(buf)
		buf = small
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.putErr != nil {
		putBuf(buf)
		return p.putErr
	}
	p.pushLocked(buf, n, now)
	return nil
}

// read copies due bytes into b, waiting until some are due. It is the
// application's Read.
func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		now := time.Now()
		if len(p.q) > 0 && !p.q[0].at.After(now) {
			n := 0
			for n < len(b) && len(p.q) > 0 && !p.q[0].at.After(now) {
				c := &p.q[0]
				k := copy(b[n:], (*c.buf)[c.off:c.n])
				n += k
				c.off += k
				if c.off == c.n {
					putBuf(p.popLocked().buf)
				}
			}
			p.signalLocked()
			return n, nil
		}
		var until time.Time
		if len(p.q) > 0 {
			until = p.q[0].at
		} else if p.getErr != nil {
			if !now.Before(p.endAt) {
				return 0, p.getErr
			}
			until = p.endAt
		}
		if len(b) == 0 {
			return 0, nil
		}
		if expired(p.getDeadline, now) {
			return 0, errTimeout
		}
		p.waitLocked(earliest(until, p.getDeadline))
	}
}

// next removes and returns the head chunk once it is due. It is the
// consumer of the writing direction, which hands the chunk to the network
// and then returns its buffer with putBuf.
func (p *pipe) next() (chunk, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		now := time.Now()
		if len(p.q) > 0 && !p.q[0].at.After(now) {
			c := p.popLocked()
			p.signalLocked()
			return c, nil
		}
		var until time.Time
		if len(p.q) > 0 {
			until = p.q[0].at
		} else if p.getErr != nil {
			if !now.Before(p.endAt) {
				return chunk{}, p.getErr
			}
			until = p.endAt
		}
		if expired(p.getDeadline, now) {
			return chunk{}, errTimeout
		}
		p.waitLocked(earliest(until, p.getDeadline))
	}
}

// finish ends the producer's side: further puts fail with putErr, and the
// consumer gets getErr after the data already queued, one sampled one-way
// delay later if delayed (a FIN travels like data). It reports false, and
// changes nothing, if the pipe had already ended.
func (p *pipe) finish(putErr, getErr error, delayed bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.signalLocked()
	if p.getErr != nil {
		return false
	}
	p.putErr, p.getErr = putErr, getErr
	end := time.Now()
	if delayed {
		if p.busy.After(end) {
			end = p.busy
		}
		end = end.Add(p.delay())
	}
	if end.Before(p.last) {
		end = p.last
	}
	p.endAt = end
	return true
}

// abort drops whatever is in flight; both sides get err from now on.
func (p *pipe) abort(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.q) > 0 {
		putBuf(p.popLocked().buf)
	}
	p.putErr, p.getErr, p.endAt = err, err, time.Time{}
	p.signalLocked()
}

// stopProducer makes further puts fail with err.
func (p *pipe) stopProducer(err error) {
	p.mu.Lock()
	p.putErr = err
	p.signalLocked()
	p.mu.Unlock()
}

func (p *pipe) setPutDeadline(t time.Time) {
	p.mu.Lock()
	p.putDeadline = t
	p.signalLocked()
	p.mu.Unlock()
}

func (p *pipe) setGetDeadline(t time.Time) {
	p.mu.Lock()
	p.getDeadline = t
	p.signalLocked()
	p.mu.Unlock()
}

// lastDelivery is the delivery time of the latest chunk put.
func (p *pipe) lastDelivery() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}
