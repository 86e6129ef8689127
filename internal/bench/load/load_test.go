package load

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

const testHost = "hello.default.example.com"

// server answers after delay with the gateway headers and counts new
// connections and requests.
type server struct {
	*httptest.Server
	conns, reqs atomic.Int64
	badHost     atomic.Int64
}

func newServer(t *testing.T, delay time.Duration, status int) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		if r.Host != testHost {
			s.badHost.Add(1)
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set(HeaderNode, "node3")
		w.Header().Set(HeaderReplica, "hello-node3-0")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("node3"))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// target sends every origin to one server.
type target struct {
	url       string
	keepAlive *http.Client
	fresh     *http.Client
}

func newTarget(url string) *target {
	return &target{
		url:       url,
		keepAlive: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		fresh:     &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

func (t *target) Client(_ string, keepAlive bool) *http.Client {
	if keepAlive {
		return t.keepAlive
	}
	return t.fresh
}
func (t *target) URL(string) string  { return t.url }
func (t *target) Host(string) string { return testHost }

func checkWindow(t *testing.T, res Result, opts Options) {
	t.Helper()
	for i, r := range res.Records {
		if r.Start < 0 || r.Start >= opts.Duration {
			t.Fatalf("record %d starts at %v, outside the window [0, %v)", i, r.Start, opts.Duration)
		}
		if i > 0 && r.Start < res.Records[i-1].Start {
			t.Fatalf("records not ordered by start at %d", i)
		}
	}
}

func TestRun_closedLoop(t *testing.T) {
	srv := newServer(t, 2*time.Millisecond, http.StatusOK)
	var done atomic.Int64
	opts := Options{Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond, Drain: time.Second, Done: &done}
	specs := []Spec{
		{Origin: "node3", Kind: Closed, Users: 3, ThinkTime: 10 * time.Millisecond, KeepAlive: true},
		{Origin: "node1", Kind: Closed, Users: 1, ThinkTime: 10 * time.Millisecond, KeepAlive: true},
	}
	res, err := Run(context.Background(), newTarget(srv.URL), specs, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if res.Window != opts.Duration {
		t.Errorf("Window = %v, want %v", res.Window, opts.Duration)
	}
	if res.Warmup == 0 {
		t.Error("no warm-up requests counted")
	}
	if len(res.Records) < 20 {
		t.Fatalf("%d records, want at least 20 from 4 users over 400 ms", len(res.Records))
	}
	if got, want := int64(len(res.Records)+res.Warmup), srv.reqs.Load(); got != want {
		t.Errorf("records+warm-up = %d, server saw %d requests", got, want)
	}
	if done.Load() != srv.reqs.Load() {
		t.Errorf("Done = %d, want %d", done.Load(), srv.reqs.Load())
	}
	checkWindow(t, res, opts)
	origins := map[string]int{}
	for _, r := range res.Records {
		origins[r.Origin]++
		if !r.OK() || r.Node != "node3" || r.Replica != "hello-node3-0" || r.Err != "" {
			t.Fatalf("record = %+v, want 200 from node3/hello-node3-0", r)
		}
		if r.Duration < 2*time.Millisecond {
			t.Fatalf("duration %v below the server's delay", r.Duration)
		}
	}
	if origins["node3"] <= origins["node1"] || origins["node1"] == 0 {
		t.Errorf("records per origin = %v, want node3 (3 users) > node1 (1 user) > 0", origins)
	}
	if srv.badHost.Load() != 0 {
		t.Errorf("%d requests without the target's Host header", srv.badHost.Load())
	}
	// Keep-alive: one connection per user at most.
	if c := srv.conns.Load(); c > 4 {
		t.Errorf("%d connections for 4 keep-alive users", c)
	}
}

func TestRun_concurrencyNewConnections(t *testing.T) {
	srv := newServer(t, time.Millisecond, http.StatusOK)
	opts := Options{Duration: 200 * time.Millisecond, Drain: time.Second}
	res, err := Run(context.Background(), newTarget(srv.URL), []Spec{{Origin: "node3", Kind: Concurrency, Users: 2}}, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if len(res.Records) < 10 {
		t.Fatalf("%d records, want at least 10", len(res.Records))
	}
	if c, n := srv.conns.Load(), srv.reqs.Load(); c != n {
		t.Errorf("%d connections for %d requests, want one per request", c, n)
	}
}

func TestRun_openLoopBound(t *testing.T) {
	srv := newServer(t, 150*time.Millisecond, http.StatusOK)
	opts := Options{Duration: 300 * time.Millisecond, Drain: time.Second, Seed: 1}
	res, err := Run(context.Background(), newTarget(srv.URL), []Spec{{Origin: "node3", Kind: Open, Rate: 200, MaxOutstanding: 2, KeepAlive: true}}, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	checkWindow(t, res, opts)
	var ok, rejected int
	for _, r := range res.Records {
		switch {
		case r.OK():
			ok++
			if r.Duration < 150*time.Millisecond {
				t.Errorf("duration %v below the server's delay", r.Duration)
			}
		case r.Err == ErrRejected:
			rejected++
			if r.Status != 0 {
				t.Errorf("rejected record has status %d", r.Status)
			}
		default:
			t.Errorf("unexpected record %+v", r)
		}
	}
	// About 60 arrivals; 2 slots of 150 ms serve at most 6.
	if ok == 0 || ok > 6 || rejected < 20 {
		t.Errorf("ok = %d, rejected = %d; want 1–6 served and most rejected", ok, rejected)
	}
	if int64(ok) != srv.reqs.Load() {
		t.Errorf("server saw %d requests, %d recorded as served", srv.reqs.Load(), ok)
	}
}

func TestRun_openLoopRate(t *testing.T) {
	srv := newServer(t, 0, http.StatusOK)
	opts := Options{Duration: 500 * time.Millisecond, Drain: time.Second, Seed: 3}
	res, err := Run(context.Background(), newTarget(srv.URL), []Spec{{Origin: "node3", Kind: Open, Rate: 400, MaxOutstanding: 50, KeepAlive: true}}, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	// 200 expected arrivals; Poisson sd ≈ 14.
	if n := len(res.Records); n < 140 || n > 260 {
		t.Errorf("%d arrivals at 400/s over 500 ms, want about 200", n)
	}
}

func TestRun_errors(t *testing.T) {
	srv := newServer(t, 0, http.StatusServiceUnavailable)
	opts := Options{Duration: 100 * time.Millisecond, Drain: time.Second}
	spec := []Spec{{Origin: "node3", Kind: Closed, Users: 1, ThinkTime: 5 * time.Millisecond, KeepAlive: true}}
	res, err := Run(context.Background(), newTarget(srv.URL), spec, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if len(res.Records) == 0 || res.Records[0].Status != http.StatusServiceUnavailable || res.Records[0].OK() {
		t.Fatalf("records = %+v, want 503s that are not OK", res.Records[:min(1, len(res.Records))])
	}

	closed := newServer(t, 0, http.StatusOK)
	url := closed.URL
	closed.Close()
	res, err = Run(context.Background(), newTarget(url), spec, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if len(res.Records) == 0 || res.Records[0].Err == "" || res.Records[0].Status != 0 {
		t.Fatalf("records = %+v, want transport errors", res.Records[:min(1, len(res.Records))])
	}
}

func TestRun_drainCutsSlowRequests(t *testing.T) {
	srv := newServer(t, 10*time.Second, http.StatusOK)
	opts := Options{Duration: 50 * time.Millisecond, Drain: 100 * time.Millisecond}
	start := time.Now()
	res, err := Run(context.Background(), newTarget(srv.URL), []Spec{{Origin: "node3", Kind: Concurrency, Users: 2, KeepAlive: true}}, opts)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run() took %v despite a 100 ms drain", el)
	}
	if len(res.Records) != 2 {
		t.Fatalf("%d records, want 2 unfinished", len(res.Records))
	}
	for _, r := range res.Records {
		if r.Err != ErrUnfinished {
			t.Errorf("record error = %q, want %q", r.Err, ErrUnfinished)
		}
	}
}

func TestRun_contextCancel(t *testing.T) {
	srv := newServer(t, time.Millisecond, http.StatusOK)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, newTarget(srv.URL), []Spec{
		{Origin: "node3", Kind: Closed, Users: 2, ThinkTime: 50 * time.Millisecond, KeepAlive: true},
		{Origin: "node1", Kind: Open, Rate: 50, MaxOutstanding: 4, KeepAlive: true},
	}, Options{Duration: time.Minute, Drain: time.Minute})
	if err == nil {
		t.Fatal("Run() error = nil, want the context's error")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run() took %v after cancel", el)
	}
	if len(res.Records) == 0 {
		t.Error("no partial records returned")
	}
}

func TestRun_invalid(t *testing.T) {
	tg := newTarget("http://127.0.0.1:1")
	for name, tc := range map[string]struct {
		spec Spec
		opts Options
	}{
		"no duration":    {Spec{Kind: Closed, Users: 1}, Options{}},
		"no users":       {Spec{Kind: Closed}, Options{Duration: time.Second}},
		"no rate":        {Spec{Kind: Open, MaxOutstanding: 1}, Options{Duration: time.Second}},
		"no outstanding": {Spec{Kind: Open, Rate: 1}, Options{Duration: time.Second}},
		"unknown kind":   {Spec{Kind: Kind(9), Users: 1}, Options{Duration: time.Second}},
	} {
		if _, err := Run(context.Background(), tg, []Spec{tc.spec}, tc.opts); err == nil {
			t.Errorf("%s: Run() error = nil, want an error", name)
		}
	}
}
