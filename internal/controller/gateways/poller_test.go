package gateways

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/nodeapi"
)

const token = "test-token"

// fakeNode is a node API whose state the test sets.
type fakeNode struct {
	mu        sync.Mutex
	state     nodeapi.State
	fail      bool
	pushed    []nodeapi.Processing
	pushedNew chan struct{}
}

func (f *fakeNode) State() nodeapi.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeNode) SetProcessing(p nodeapi.Processing) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("refused")
	}
	f.pushed = append(f.pushed, p)
	return nil
}

func (f *fakeNode) set(fn func(*nodeapi.State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.state)
}

// serve runs the node API of f on a free loopback port.
func serve(t *testing.T, f *fakeNode) (host string, port int32, srv *httptest.Server) {
	t.Helper()
	srv = httptest.NewServer(nodeapi.Handler(f, token))
	t.Cleanup(srv.Close)
	h, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n), srv
}

// slice is one gateway's EndpointSlice of the peers Service.
func slice(node, host string, port int32, ready bool) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kantai-system", Name: "peers-" + node,
			Labels: map[string]string{discoveryv1.LabelServiceName: DefaultService}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(DefaultPortName), Port: ptr.To(port)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	}
}

func newPoller(t *testing.T, objs ...client.Object) *Poller {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	return &Poller{Client: c, Namespace: "kantai-system", API: nodeapi.NewClient(token, 5*time.Second), Timeout: 5 * time.Second}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func revStats(area float64, waiting int) gateway.RevisionStats {
	return gateway.RevisionStats{Revision: "ns/r", Since: t0, Area: area, Waiting: waiting}
}

// TestPoller_Poll: readings become windows once, a gateway that stops
// answering keeps its last state marked stale, RTTs come from the rows,
// waiting requests send an event for the revision, and the view event
// fires on a change of what ready gateways report of Ingresses.
func TestPoller_Poll(t *testing.T) {
	a := &fakeNode{state: nodeapi.State{Node: "a", Stats: gateway.Stats{Node: "a", Epoch: 1, At: t0.Add(time.Second),
		Revisions: []gateway.RevisionStats{revStats(0, 0)}},
		RTT: latency.Row{"b": {RTT: 0.004, Samples: 3}}, Ingresses: map[string]int64{"ns/r": 1}}}
	b := &fakeNode{state: nodeapi.State{Node: "b", Stats: gateway.Stats{Node: "b", Epoch: 9, At: t0.Add(time.Second)}}}
	ha, pa, _ := serve(t, a)
	hb, pb, srvB := serve(t, b)
	p := newPoller(t, slice("a", ha, pa, true), slice("b", hb, pb, true))
	revs, views := p.RevisionEvents(), p.ViewEvents()
	ctx := context.Background()

	p.Poll(ctx) // first reading: a baseline
	if w := p.Take("ns/r"); len(w.Demand) != 0 {
		t.Errorf("first reading counted as a window: %+v", w)
	}
	if len(views) != 1 {
		t.Errorf("no view event after the first poll")
	}
	<-views
	if d, ok := p.RTT("a", "b"); !ok || d != 4*time.Millisecond {
		t.Errorf("RTT(a, b) = %v, %v; want 4ms", d, ok)
	}
	if _, ok := p.RTT("b", "a"); ok {
		t.Errorf("RTT(b, a) known; b reports no row")
	}

	// Two seconds with one request waiting at a.
	a.set(func(s *nodeapi.State) {
		s.Stats.At = t0.Add(3 * time.Second)
		s.Stats.Revisions = []gateway.RevisionStats{revStats(2, 1)}
	})
	srvB.Close() // b stops answering
	p.Poll(ctx)
	if got := recv(t, revs); got != "ns/r" {
		t.Errorf("revision event %q, want ns/r", got)
	}
	w := p.Take("ns/r")
	if len(w.Demand) != 1 || w.Demand[0].Origin != "a" || w.Demand[0].Concurrency != 1 || w.Waiting != 1 {
		t.Errorf("windows %+v, want concurrency 1 from a and 1 waiting", w)
	}
	if w := p.Take("ns/r"); len(w.Demand) != 0 {
		t.Errorf("a second Take counted again: %+v", w)
	}
	gws := p.Gateways()
	if len(gws) != 2 || gws[1].Node != "b" || !gws[1].Stale || !gws[1].Known || gws[1].State.Stats.Epoch != 9 {
		t.Errorf("gateways %+v, want b stale with its last known state", gws)
	}
	if gws[0].Stale || !gws[0].Ready || gws[0].State.Ingresses["ns/r"] != 1 {
		t.Errorf("gateway a = %+v, want fresh and ready", gws[0])
	}
	if len(views) != 0 {
		t.Errorf("view event though no ready gateway's report changed")
	}

	// Nothing waits, no demand: no event. A new Ingress generation at a:
	// a view event.
	a.set(func(s *nodeapi.State) {
		s.Stats.At = t0.Add(4 * time.Second)
		s.Stats.Revisions = []gateway.RevisionStats{revStats(2, 0)}
		s.Ingresses = map[string]int64{"ns/r": 2}
	})
	p.Poll(ctx)
	if len(revs) != 0 {
		t.Errorf("revision event %q without demand", recv(t, revs))
	}
	if len(views) != 1 {
		t.Errorf("no view event after an Ingress generation changed")
	}
}

// TestPoller_NodeMismatch: a gateway that reports another node's name is
// not believed.
func TestPoller_NodeMismatch(t *testing.T) {
	a := &fakeNode{state: nodeapi.State{Node: "other", Stats: gateway.Stats{Epoch: 1, At: t0}}}
	h, port, _ := serve(t, a)
	p := newPoller(t, slice("a", h, port, true))
	p.Poll(context.Background())
	if g := p.Gateways(); len(g) != 1 || g[0].Known {
		t.Errorf("gateways %+v, want a unknown", g)
	}
}

// TestPoller_Start: the loop polls on the injected clock's ticks and
// pushes the estimates queued by SetProcessing, once per value.
func TestPoller_Start(t *testing.T) {
	a := &fakeNode{state: nodeapi.State{Node: "a", Stats: gateway.Stats{Node: "a", Epoch: 1, At: t0,
		Revisions: []gateway.RevisionStats{revStats(0, 0)}}}}
	h, port, _ := serve(t, a)
	p := newPoller(t, slice("a", h, port, false))
	clk := clocktesting.NewFakeClock(t0)
	p.Clock = clk
	rounds := make(chan string, 16)
	p.afterRound = func(kind string) { rounds <- kind }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Start(ctx) }()
	defer func() { cancel(); <-done }()

	waitRound(t, rounds, "poll") // the first poll, at start
	a.set(func(s *nodeapi.State) {
		s.Stats.At = t0.Add(time.Second)
		s.Stats.Revisions = []gateway.RevisionStats{revStats(0.5, 0)}
	})
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond) // the ticker is made right after the first poll
	}
	clk.Step(time.Second)
	waitRound(t, rounds, "poll")
	if w := p.Take("ns/r"); len(w.Demand) != 1 || w.Demand[0].Concurrency != 0.5 {
		t.Errorf("windows after a tick %+v, want concurrency 0.5 from a", w)
	}

	est := map[string]time.Duration{"a": 20 * time.Millisecond, "b": 0}
	p.SetProcessing("ns/r", est)
	waitRound(t, rounds, "push")
	p.SetProcessing("ns/r", est) // the same again: not sent
	waitRound(t, rounds, "push")
	a.mu.Lock()
	pushed := a.pushed
	a.mu.Unlock()
	if len(pushed) != 1 || pushed[0].Revision != "ns/r" || pushed[0].PerNode["a"] != 0.02 || pushed[0].PerNode["b"] != 0 {
		t.Errorf("pushed %+v, want one push of ns/r a=0.02 b=0", pushed)
	}
}

func waitRound(t *testing.T, rounds chan string, want string) {
	t.Helper()
	select {
	case got := <-rounds:
		if got != want {
			t.Fatalf("round %q, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s round within 30s", want)
	}
}

func recv(t *testing.T, ch <-chan event.GenericEvent) string {
	t.Helper()
	select {
	case ev := <-ch:
		return ev.Object.GetNamespace() + "/" + ev.Object.GetName()
	default:
		t.Fatal("no event")
		return ""
	}
}
