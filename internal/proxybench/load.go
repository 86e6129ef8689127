package proxybench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks HTTP/1.1 itself over keep-alive connections: one
// goroutine per connection writes a prepared request and parses the answer
// on the same goroutine, without allocating. It costs the shared CPUs much
// less than net/http's client, so more of them are left to the target, and
// it is the same code for every target.

// requestTimeout bounds one request; a target that stops answering shows up
// as errors, not as a hung run.
const requestTimeout = 5 * time.Second

// buildRequest is the load's request: a GET, or a POST of upload bytes.
func buildRequest(host string, upload int) []byte {
	if upload <= 0 {
		return []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: kantai-proxybench\r\nAccept: */*\r\n\r\n")
	}
	head := "POST / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: kantai-proxybench\r\nAccept: */*\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(upload) + "\r\n\r\n"
	return append([]byte(head), bytes.Repeat([]byte("u"), upload)...)
}

type client struct {
	addr string
	req  []byte
	c    net.Conn
	br   *bufio.Reader
}

func (c *client) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// do sends one request and reads the whole answer; it reports the status.
func (c *client) do() (int, error) {
	if c.c == nil {
		conn, err := net.DialTimeout("tcp", c.addr, requestTimeout)
		if err != nil {
			return 0, err
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c.c = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	_ = c.c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := c.c.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	code, keep, err := readResponse(c.br)
	if err != nil || !keep {
		c.close()
	}
	return code, err
}

var errMalformed = errors.New("malformed response")

// readResponse reads one HTTP/1.1 response (Content-Length or chunked body)
// and discards its body; keep reports whether the connection stays usable.
func readResponse(br *bufio.Reader) (code int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	code = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	keep = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return code, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return code, false, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		name, value := line[:i], bytes.TrimSpace(line[i+1:])
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, perr := parseInt(value)
			if perr != nil {
				return code, false, perr
			}
			length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				keep = false
			}
		}
	}
	switch {
	case code == 204 || code == 304 || code/100 == 1:
		return code, keep, nil
	case chunked:
		return code, keep, discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
		return code, keep, err
	default: // body until close
		_, err = io.Copy(io.Discard, br)
		return code, false, err
	}
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return fmt.Errorf("%w: chunk size: %v", errMalformed, err)
		}
		if n == 0 { // trailers until the empty line
			for {
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: length %q", errMalformed, b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: length %q", errMalformed, b)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// sample is what one load phase measured inside its window.
type sample struct {
	lat      []int64 // ns, per successful request
	requests int64   // successful (2xx) answers
	errors   int64   // transport errors and non-2xx answers
	firstErr error
	window   time.Duration
}

func (s *sample) merge(lat []int64, ok, bad int64, err error) {
	s.lat = append(s.lat, lat...)
	s.requests += ok
	s.errors += bad
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// percentile of sorted ns values, in µs.
func percentileUS(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / 1e3
}

// window tells when a phase runs, its measured part, and what to do at the
// measured part's edges (CPU snapshots).
type window struct {
	warmup, length time.Duration
	atStart        func()
	atEnd          func()
}

// closedLoop keeps conc connections busy, each sending its next request as
// soon as the previous one is answered.
func closedLoop(addr string, req []byte, conc int, w window) sample {
	t0 := time.Now()
	mStart, mEnd := t0.Add(w.warmup), t0.Add(w.warmup+w.length)
	var (
		mu  sync.Mutex
		out sample
		wg  sync.WaitGroup
	)
	out.window = w.length
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{addr: addr, req: req}
			defer c.close()
			lat := make([]int64, 0, 1<<14)
			var ok, bad int64
			var firstErr error
			fails := 0
			for {
				s := time.Now()
				if !s.Before(mEnd) {
					break
				}
				code, err := c.do()
				e := time.Now()
				in := !s.Before(mStart) && e.Before(mEnd)
				switch {
				case err == nil && code/100 == 2:
					fails = 0
					if in {
						ok++
						lat = append(lat, int64(e.Sub(s)))
					}
				default:
					if err == nil {
						err = fmt.Errorf("status %d", code)
					}
					if in {
						bad++
						if firstErr == nil {
							firstErr = err
						}
					}
					if fails++; fails > 3 {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}
			mu.Lock()
			out.merge(lat, ok, bad, firstErr)
			mu.Unlock()
		}()
	}
	edges(mStart, mEnd, w)
	wg.Wait()
	return out
}

func edges(mStart, mEnd time.Time, w window) {
	time.Sleep(time.Until(mStart))
	if w.atStart != nil {
		w.atStart()
	}
	time.Sleep(time.Until(mEnd))
	if w.atEnd != nil {
		w.atEnd()
	}
}

// maxOpenConns bounds the connections of the open loop; beyond it sends
// wait, and the run reports the backlog as errors would show it: latency.
const maxOpenConns = 512

// openLoop sends rate requests per second on schedule, whatever the target's
// answers do: a request due while every connection is busy gets a new one.
// Latency runs from the moment the request is written.
func openLoop(addr string, req []byte, rate int, w window) sample {
	interval := time.Second / time.Duration(rate)
	var (
		mu      sync.Mutex
		out     sample
		wg      sync.WaitGroup
		workers atomic.Int32
	)
	out.window = w.length
	jobs := make(chan bool) // true: inside the measured window
	worker := func(first bool, hasFirst bool) {
		defer wg.Done()
		c := &client{addr: addr, req: req}
		defer c.close()
		var lat []int64
		var ok, bad int64
		var firstErr error
		run := func(in bool) {
			s := time.Now()
			code, err := c.do()
			d := time.Since(s)
			if !in {
				return
			}
			if err == nil && code/100 == 2 {
				ok++
				lat = append(lat, int64(d))
				return
			}
			if err == nil {
				err = fmt.Errorf("status %d", code)
			}
			bad++
			if firstErr == nil {
				firstErr = err
			}
		}
		if hasFirst {
			run(first)
		}
		for in := range jobs {
			run(in)
		}
		mu.Lock()
		out.merge(lat, ok, bad, firstErr)
		mu.Unlock()
	}
	// A few idle connections from the start, so that the first requests do
	// not pay for dialling.
	for i := 0; i < 4; i++ {
		wg.Add(1)
		workers.Add(1)
		go worker(false, false)
	}
	t0 := time.Now()
	mStart, mEnd := t0.Add(w.warmup), t0.Add(w.warmup+w.length)
	done := make(chan struct{})
	go func() {
		edges(mStart, mEnd, w)
		close(done)
	}()
	for i := 0; ; i++ {
		due := t0.Add(time.Duration(i) * interval)
		if !due.Before(mEnd) {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		in := !due.Before(mStart)
		select {
		case jobs <- in:
		default:
			if workers.Load() < maxOpenConns {
				workers.Add(1)
				wg.Add(1)
				go worker(in, true)
			} else {
				jobs <- in
			}
		}
	}
	close(jobs)
	<-done
	wg.Wait()
	return out
}

func sortedLatencies(s *sample) []int64 {
	slices.Sort(s.lat)
	return s.lat
}
