package latency

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The probe's round trip is timed on the connection itself rather than
// around the HTTP client: from the moment the request is handed to the
// socket (the start of the connection's first Write) to the return of the
// first Read that brings the answer, both taken in the goroutines that do
// the I/O. That is as close to the socket as Go lets user code get; what
// the HTTP client does before writing and after reading is left out. The
// peer does the same on its side and reports the time from the end of
// reading the request to the moment it writes the answer, which the prober
// subtracts.

// probeConn stamps the first Write and the first Read after arm.
type probeConn struct {
	net.Conn
	mu         sync.Mutex
	armed      bool
	sent, recv time.Time
}

func (c *probeConn) arm() {
	c.mu.Lock()
	c.armed, c.sent, c.recv = true, time.Time{}, time.Time{}
	c.mu.Unlock()
}

// stamps returns the times taken since arm and disarms.
func (c *probeConn) stamps() (sent, recv time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	return c.sent, c.recv
}

func (c *probeConn) Write(b []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	if c.armed && c.sent.IsZero() {
		c.sent = now
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *probeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := time.Now()
		c.mu.Lock()
		if c.armed && !c.sent.IsZero() && c.recv.IsZero() {
			c.recv = now
		}
		c.mu.Unlock()
	}
	return n, err
}

func stampingDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &probeConn{Conn: c}, nil
	}
}

// servedConn remembers when its last Read returned data: for a ping, the
// end of reading the request.
type servedConn struct {
	net.Conn
	mu   sync.Mutex
	last time.Time
}

func (c *servedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := time.Now()
		c.mu.Lock()
		c.last = now
		c.mu.Unlock()
	}
	return n, err
}

func (c *servedConn) lastRead() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

type stampingListener struct{ net.Listener }

func (l stampingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &servedConn{Conn: c}, nil
}

type servedConnKey struct{}

// handlingHeader carries the peer's handling time as a W3C Server-Timing
// metric, in milliseconds: "Server-Timing: ping;dur=0.042".
const handlingHeader = "Server-Timing"

func formatHandling(d time.Duration) string {
	return "ping;dur=" + strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 4, 64)
}

// parseHandling reads the handling time from a Server-Timing value; 0 if
// there is none or it makes no sense.
func parseHandling(h string) time.Duration {
	for _, metric := range strings.Split(h, ",") {
		parts := strings.Split(strings.TrimSpace(metric), ";")
		if parts[0] != "ping" {
			continue
		}
		for _, p := range parts[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
				ms, err := strconv.ParseFloat(v, 64)
				if err != nil || ms < 0 || ms > float64(MaxRTT/time.Millisecond) {
					return 0
				}
				return time.Duration(ms * float64(time.Millisecond))
			}
		}
	}
	return 0
}

// servedConnOf returns the connection a request came in on, if the agent's
// own server accepted it.
func servedConnOf(r *http.Request) *servedConn {
	c, _ := r.Context().Value(servedConnKey{}).(*servedConn)
	return c
}
