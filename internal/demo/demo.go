// Package demo runs the seed's walkthrough end to end on an embedded fleet:
// deploy hello, watch the first replica go after the window, call it from
// the edge and get an answer from the edge, then burst from the cloud and
// get answers from the cloud. Every step checks what it shows.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"kantai.dev/kantai/examples"
	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/manifest"
)

// Options tunes the demo; zero values mean the seed's setting.
type Options struct {
	Fleet fleet.Options
	// Burst is the number of requests sent from node1 (default 50).
	Burst int
}

type runner struct {
	out   io.Writer
	f     *fleet.Fleet
	start time.Time
	step  int
}

func (r *runner) say(format string, args ...any) {
	fmt.Fprintf(r.out, "[%5.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

func (r *runner) begin(title string) {
	r.step++
	fmt.Fprintf(r.out, "\n== Step %d: %s\n", r.step, title)
}

// Run executes the walkthrough; it returns an error naming the first step
// that did not behave as described.
func Run(ctx context.Context, out io.Writer, opts Options) (err error) {
	if opts.Burst == 0 {
		opts.Burst = 50
	}
	r := &runner{out: out, start: time.Now()}
	r.begin("start the emulated fleet")
	f, err := fleet.Start(ctx, opts.Fleet)
	if err != nil {
		return fmt.Errorf("starting the fleet: %w", err)
	}
	r.f = f
	defer func() {
		r.begin("tear down")
		f.Close()
		left := len(f.Replicas())
		r.say("fleet stopped; %d replica processes left", left)
		if left != 0 && err == nil {
			err = fmt.Errorf("tear down: %d replicas still listed", left)
		}
	}()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tGATEWAY\tCAPACITY")
	for _, n := range f.Nodes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name, n.Role, n.Address, n.Gateway, n.Capacity)
	}
	tw.Flush()
	r.say("links: node1↔node2 1 ms, node1/node2↔node3 50 ms ± 10 ms (emulated in user space)")
	if err := r.waitFor(ctx, 15*time.Second, "latency agents to measure every link a few times", func() bool {
		return f.LatencySamples() >= 3
	}); err != nil {
		return err
	}
	r.printLatency(f.Latency())

	r.begin("apply hello (window 12s, target 10)")
	fns, err := manifest.ParseAll(examples.Hello)
	if err != nil {
		return fmt.Errorf("examples/hello.yaml: %w", err)
	}
	hello := fns[0]
	if err := f.Apply(hello); err != nil {
		return err
	}
	key := hello.Key()
	r.say("service.serving.knative.dev/hello created; URL http://hello.default.%s", f.Testbed().Domain)
	if err := r.waitFor(ctx, 15*time.Second, "the first replica (initial scale 1)", func() bool { return r.ready(key) >= 1 }); err != nil {
		return err
	}
	for _, rep := range f.Replicas() {
		r.say("replica %s is %s on %s", rep.Name, rep.State, rep.Node)
	}
	r.say("replicas %s", r.status(key))

	r.begin("wait for scale to zero after the 12s window without traffic")
	if err := r.waitFor(ctx, 30*time.Second, "scale to zero", func() bool { return len(f.Replicas()) == 0 }); err != nil {
		return err
	}
	r.say("no replica left; replicas %s", r.status(key))

	r.begin("call hello from node3 (edge)")
	res, err := r.call(ctx, "node3")
	if err != nil {
		return err
	}
	r.say("curl hello.default.svc.cluster.local from node3 → %d %q in %v (served by %s on %s)",
		res.code, strings.TrimSpace(res.body), res.took.Round(time.Millisecond), res.replica, res.node)
	if res.code != 200 || !strings.HasPrefix(res.body, "Konnichiwa from hello-node3-") || !strings.HasSuffix(strings.TrimSpace(res.body), " in node3") {
		return fmt.Errorf("call from node3: got %d %q, want \"Konnichiwa from hello-node3-… in node3\"", res.code, res.body)
	}
	if got := r.status(key); got != "0-0-1/0-0-1" {
		return fmt.Errorf("replicas after the edge call: %s, want 0-0-1/0-0-1", got)
	}
	r.say("replicas %s: the replica was placed where the demand came from", r.status(key))

	r.begin("call hello from node1 (cloud), then a burst of " + fmt.Sprint(opts.Burst))
	res, err = r.call(ctx, "node1")
	if err != nil {
		return err
	}
	r.say("first call from node1 → served by %s on %s in %v; the only ready replica is on node3, and node1's demand starts one nearby",
		res.replica, res.node, res.took.Round(time.Millisecond))
	if err := r.waitFor(ctx, 15*time.Second, "a replica on a cloud node", func() bool {
		st := r.fnStatus(key)
		return st.Ready["node1"]+st.Ready["node2"] > 0
	}); err != nil {
		return err
	}
	r.say("replicas %s", r.status(key))
	served, err := r.burst(ctx, "node1", opts.Burst, 5)
	if err != nil {
		return err
	}
	r.say("burst from node1: served %s", formatCounts(served))
	if served["node3"] > 0 || served["node1"]+served["node2"] != opts.Burst {
		return fmt.Errorf("burst from node1: served %s, want all %d on the cloud nodes", formatCounts(served), opts.Burst)
	}

	r.begin("re-apply hello with TARGET=Konbanwa: a new revision rolls out")
	next := *hello
	next.Env = []manifest.EnvVar{{Name: "TARGET", Value: "Konbanwa"}}
	if err := f.Apply(&next); err != nil {
		return err
	}
	if err := r.waitFor(ctx, 30*time.Second, "hello-00002 to take the traffic", func() bool {
		res, err := r.call(ctx, "node1")
		return err == nil && res.code == 200 && strings.HasPrefix(res.body, "Konbanwa from")
	}); err != nil {
		return err
	}
	if err := r.waitFor(ctx, 30*time.Second, "hello-00001's replicas to drain and stop", func() bool {
		for _, rep := range f.Replicas() {
			if rep.Revision == "hello-00001" {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tREADY\tTRAFFIC\tREPLICAS")
	for _, rev := range f.Revisions() {
		fmt.Fprintf(tw, "%s\t%t\t%d%%\t%s\n", rev.Name, rev.Ready, rev.Percent, rev.Replicas)
	}
	tw.Flush()
	r.say("the new revision took the traffic once ready; the old one drained, no request lost")

	r.begin("the latency matrix, as measured by the agents")
	r.printLatency(f.Latency())
	return nil
}

func (r *runner) fnStatus(key string) fleet.FunctionStatus {
	for _, st := range r.f.Functions() {
		if st.Namespace+"/"+st.Name == key {
			return st
		}
	}
	return fleet.FunctionStatus{}
}

func (r *runner) status(key string) string { return r.fnStatus(key).Replicas }

func (r *runner) ready(key string) int {
	n := 0
	for _, c := range r.fnStatus(key).Ready {
		n += c
	}
	return n
}

func (r *runner) waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	r.say("waiting for %s …", what)
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

type result struct {
	code          int
	body          string
	took          time.Duration
	replica, node string
}

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func (r *runner) call(ctx context.Context, from string) (result, error) {
	addr, ok := r.f.GatewayAddr(from)
	if !ok {
		return result{}, fmt.Errorf("no node %s", from)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	if err != nil {
		return result{}, err
	}
	req.Host = "hello.default.svc.cluster.local"
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("request from %s: %w", from, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("request from %s: reading the answer: %w", from, err)
	}
	return result{code: resp.StatusCode, body: string(body), took: time.Since(start),
		replica: resp.Header.Get(gateway.HeaderReplica), node: resp.Header.Get(gateway.HeaderNode)}, nil
}

func (r *runner) burst(ctx context.Context, from string, n, concurrency int) (map[string]int, error) {
	var mu sync.Mutex
	served := map[string]int{}
	var firstErr error
	jobs := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				res, err := r.call(ctx, from)
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = err
				case err == nil && res.code != 200 && firstErr == nil:
					firstErr = fmt.Errorf("burst request: status %d: %s", res.code, res.body)
				case err == nil:
					served[res.node]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return served, firstErr
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " ")
}

func (r *runner) printLatency(m latency.Matrix) {
	PrintLatency(r.out, r.f.Testbed().NodeNames(), m)
}

// PrintLatency renders the matrix as a table of smoothed RTT ± jitter.
func PrintLatency(out io.Writer, nodes []string, m latency.Matrix) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "FROM \\ TO")
	for _, n := range nodes {
		fmt.Fprintf(tw, "\t%s", n)
	}
	fmt.Fprintln(tw)
	for _, a := range nodes {
		fmt.Fprint(tw, a)
		for _, b := range nodes {
			cell := "-"
			if a != b {
				if e, ok := m[a][b]; ok {
					cell = fmt.Sprintf("%.1f ± %.1f ms", e.RTT*1000, e.Jitter*1000)
					if e.Estimated {
						cell += " (est.)"
					}
					if e.Stale {
						cell += " (stale)"
					}
				} else {
					cell = "?"
				}
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
