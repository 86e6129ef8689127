// Package load generates benchmark traffic against a Target: closed-loop
// users with a think time (Locust-like), open-loop Poisson arrivals with a
// bound on outstanding requests, and fixed concurrency without think time
// (hey-like). Every request becomes a Record; the generator logs nothing.
package load

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is what the generator sends requests to.
type Target interface {
	// Client returns the HTTP client users at origin send with. It may be
	// shared between calls; it is called once per user or worker. With
	// keepAlive false it must not reuse connections. A shared client's
	// transport should keep at least as many idle connections per host as
	// there are users (MaxIdleConnsPerHost), or keep-alive runs will keep
	// opening connections.
	Client(origin string, keepAlive bool) *http.Client
	// URL is the gateway URL users at origin hit, e.g. http://127.77.0.12:8080.
	URL(origin string) string
	// Host is the Host header naming a function, e.g.
	// hello.default.example.com for function "hello" (Spec.Function; empty
	// names the target's only function).
	Host(function string) string
}

// Response headers the gateways set.
const (
	HeaderNode    = "X-Kantai-Node"
	HeaderReplica = "X-Kantai-Replica"
)

// Kind selects the generator.
type Kind int

// Generators.
const (
	// Closed runs Users closed-loop users, each pausing ThinkTime after a response.
	Closed Kind = iota
	// Open sends Poisson arrivals at Rate per second, with at most
	// MaxOutstanding requests in flight; arrivals beyond it are recorded as
	// errors.
	Open
	// Concurrency keeps Users requests in flight with no pause.
	Concurrency
)

func (k Kind) String() string {
	switch k {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case Concurrency:
		return "concurrency"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Spec is the traffic to one function from one origin node.
type Spec struct {
	// Function names the function the requests go to; it is passed to
	// Target.Host and copied into every Record.
	Function string
	// Path is the request path; empty takes Options.Path.
	Path           string
	Origin         string
	Kind           Kind
	Users          int
	ThinkTime      time.Duration
	Rate           float64
	MaxOutstanding int
	// KeepAlive reuses connections; false opens one per request.
	KeepAlive bool
}

// Options shape a run.
type Options struct {
	// Warmup runs the load before the measured window; those requests are
	// counted in Result.Warmup but not recorded.
	Warmup time.Duration
	// Duration is the measured window. New requests stop at its end.
	Duration time.Duration
	// Drain bounds how long requests in flight at the end may still take;
	// those cut off are recorded with ErrUnfinished.
	Drain time.Duration
	// Path is the request path of specs that give none, default "/".
	Path string
	// Seed seeds the open-loop arrival processes.
	Seed uint64
	// Done, when set, is incremented after every finished request, for
	// progress reporting.
	Done *atomic.Int64
}

// Record is one request of the measured window.
type Record struct {
	// Function is the Spec's function.
	Function string `json:"function,omitempty"`
	Origin   string `json:"origin"`
	// Start is the offset from the start of the measured window (for open
	// loops, the scheduled arrival time).
	Start    time.Duration `json:"start"`
	Duration time.Duration `json:"duration"`
	// Status is the HTTP status, 0 when no response arrived.
	Status  int    `json:"status"`
	Node    string `json:"node,omitempty"`
	Replica string `json:"replica,omitempty"`
	Err     string `json:"error,omitempty"`
}

// OK reports a 2xx response.
func (r Record) OK() bool { return r.Status >= 200 && r.Status < 300 && r.Err == "" }

// Error strings for requests that got no answer from the target.
const (
	ErrUnfinished = "unfinished at the end of the drain period"
	ErrRejected   = "not sent: outstanding-request bound reached"
)

// Result is what a run produced.
type Result struct {
	// Records holds the measured window's requests, ordered by Start.
	Records []Record
	// Warmup counts the requests started during the warm-up.
	Warmup int
	// Window is the measured window's length.
	Window time.Duration
}

// Run sends the specs' traffic concurrently and returns the records. It
// returns early, with what was recorded and ctx's error, when ctx ends.
func Run(ctx context.Context, t Target, specs []Spec, opts Options) (Result, error) {
	if opts.Duration <= 0 {
		return Result{}, fmt.Errorf("load: duration must be positive, got %v", opts.Duration)
	}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return Result{}, fmt.Errorf("load: spec %d (origin %s): %w", i, s.Origin, err)
		}
	}
	if opts.Path == "" {
		opts.Path = "/"
	}
	start := time.Now()
	r := &run{
		target:   t,
		opts:     opts,
		start:    start,
		measured: start.Add(opts.Warmup),
		end:      start.Add(opts.Warmup + opts.Duration),
		parent:   ctx,
	}
	// issue ends at the window's end: no request starts after it.
	issue, cancelIssue := context.WithDeadline(ctx, r.end)
	defer cancelIssue()
	// reqCtx lets in-flight requests finish during the drain.
	reqCtx, cancelReq := context.WithDeadline(ctx, r.end.Add(opts.Drain))
	defer cancelReq()
	r.issue, r.reqCtx = issue, reqCtx

	var wg sync.WaitGroup
	var outs []*output
	for i, s := range specs {
		switch s.Kind {
		case Closed, Concurrency:
			for range s.Users {
				o := r.newOutput(s)
				outs = append(outs, o)
				wg.Go(func() { r.user(s, o) })
			}
		case Open:
			pool := make([]*output, s.MaxOutstanding+1)
			for j := range pool {
				pool[j] = r.newOutput(s)
			}
			outs = append(outs, pool...)
			wg.Go(func() { r.open(s, opts.Seed+uint64(i), pool) })
		}
	}
	wg.Wait()

	n, warm := 0, 0
	for _, o := range outs {
		n += len(o.recs)
		warm += o.warm
	}
	res := Result{Records: make([]Record, 0, n), Warmup: warm, Window: opts.Duration}
	for _, o := range outs {
		res.Records = append(res.Records, o.recs...)
	}
	slices.SortStableFunc(res.Records, func(a, b Record) int { return cmp.Compare(a.Start, b.Start) })
	return res, ctx.Err()
}

func (s Spec) validate() error {
	switch s.Kind {
	case Closed, Concurrency:
		if s.Users <= 0 {
			return fmt.Errorf("users must be positive, got %d", s.Users)
		}
		if s.ThinkTime < 0 {
			return fmt.Errorf("think time must not be negative")
		}
	case Open:
		if !(s.Rate > 0) {
			return fmt.Errorf("rate must be positive, got %v", s.Rate)
		}
		if s.MaxOutstanding <= 0 {
			return fmt.Errorf("max outstanding must be positive, got %d", s.MaxOutstanding)
		}
	default:
		return fmt.Errorf("unknown kind %v", s.Kind)
	}
	return nil
}

type run struct {
	target          Target
	opts            Options
	start, measured time.Time
	end             time.Time
	parent, issue   context.Context
	reqCtx          context.Context
}

// output is one goroutine's own record slice: no locking on the hot path.
type output struct {
	recs []Record
	warm int
}

func (r *run) newOutput(s Spec) *output {
	// Preallocate what the spec is likely to produce, within reason.
	total := r.opts.Duration
	var c int
	switch s.Kind {
	case Closed:
		c = int(total / max(s.ThinkTime+time.Millisecond, 2*time.Millisecond))
	case Concurrency:
		c = int(total / (2 * time.Millisecond))
	case Open:
		c = int(s.Rate*total.Seconds()) / (s.MaxOutstanding + 1)
	}
	return &output{recs: make([]Record, 0, min(max(c, 16), 1<<15))}
}

// caller sends one origin's requests with one client.
type caller struct {
	r         *run
	origin    string
	client    *http.Client
	url       string
	host      string
	keepAlive bool
	req       *http.Request
}

func (r *run) newCaller(s Spec) *caller {
	path := s.Path
	if path == "" {
		path = r.opts.Path
	}
	return &caller{
		r:         r,
		origin:    s.Origin,
		client:    r.target.Client(s.Origin, s.KeepAlive),
		url:       strings.TrimSuffix(r.target.URL(s.Origin), "/") + path,
		host:      r.target.Host(s.Function),
		keepAlive: s.KeepAlive,
	}
}

// do sends one request and fills rec's outcome fields.
func (c *caller) do(rec *Record) {
	if c.req == nil {
		req, err := http.NewRequestWithContext(c.r.reqCtx, http.MethodGet, c.url, nil)
		if err != nil {
			rec.Err = err.Error()
			return
		}
		req.Host = c.host
		req.Close = !c.keepAlive
		c.req = req
	}
	t0 := time.Now()
	resp, err := c.client.Do(c.req)
	if err != nil {
		rec.Duration = time.Since(t0)
		rec.Err = c.describe(err)
		c.req = nil // rebuild: the failed request may still be referenced
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rec.Duration = time.Since(t0)
	rec.Status = resp.StatusCode
	rec.Node = resp.Header.Get(HeaderNode)
	rec.Replica = resp.Header.Get(HeaderReplica)
	if err != nil {
		rec.Err = c.describe(err)
		c.req = nil
	}
}

func (c *caller) describe(err error) string {
	if c.r.reqCtx.Err() != nil && c.r.parent.Err() == nil {
		return ErrUnfinished
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func (r *run) keep(o *output, rec Record, at time.Time) {
	if at.Before(r.measured) {
		o.warm++
		return
	}
	rec.Start = at.Sub(r.measured)
	o.recs = append(o.recs, rec)
}

func (r *run) finished() {
	if r.opts.Done != nil {
		r.opts.Done.Add(1)
	}
}

// user is one closed-loop user or one concurrency slot.
func (r *run) user(s Spec, o *output) {
	c := r.newCaller(s)
	var timer *time.Timer
	if s.Kind == Closed && s.ThinkTime > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
	}
	for r.issue.Err() == nil {
		at := time.Now()
		if !at.Before(r.end) {
			return
		}
		rec := Record{Function: s.Function, Origin: s.Origin}
		c.do(&rec)
		r.keep(o, rec, at)
		r.finished()
		if timer != nil {
			timer.Reset(s.ThinkTime)
			select {
			case <-timer.C:
			case <-r.issue.Done():
				return
			}
		}
	}
}

// open runs one Poisson arrival process. outs[0] holds the dispatcher's
// rejections, outs[1:] one per worker.
func (r *run) open(s Spec, seed uint64, outs []*output) {
	jobs := make(chan time.Time)
	var wg sync.WaitGroup
	for _, o := range outs[1:] {
		wg.Go(func() {
			c := r.newCaller(s)
			for at := range jobs {
				rec := Record{Function: s.Function, Origin: s.Origin}
				c.do(&rec)
				// Measured from the scheduled arrival, so time spent
				// waiting for a free worker counts.
				rec.Duration = time.Since(at)
				r.keep(o, rec, at)
				r.finished()
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)

	rng := rand.New(rand.NewPCG(seed, 0x6b616e746169))
	mean := float64(time.Second) / s.Rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := r.start
	for {
		next = next.Add(time.Duration(rng.ExpFloat64() * mean))
		if !next.Before(r.end) {
			return
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.issue.Done():
				return
			}
		}
		select {
		case jobs <- next:
		default:
			r.keep(outs[0], Record{Function: s.Function, Origin: s.Origin, Err: ErrRejected}, next)
			r.finished()
		}
	}
}
