package latency

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kantai.dev/kantai/internal/linkemu"
)

// BenchmarkEmulatedAgents runs whole fleets of agents in this process on
// loopback (127.77.240.0/24 and 127.77.241.0/24), each dialling through
// emulated links whose RTTs come from newWorld, on the real clock, and
// prints: the time until every agent has an RTT for every peer, the CPU
// and RSS of the process at idle after a warm-up, probes per second, and
// the error of every agent's own row against the configured RTTs (median
// and p95 absolute error, measured and estimated entries apart). It takes
// about three minutes and needs the machine quiet to mean anything:
//
//	go test -run '^$' -bench EmulatedAgents -benchtime 1x ./internal/latency
//
// It is the agents alone: no gateways, no replicas (package fleet starts
// those).
func BenchmarkEmulatedAgents(b *testing.B) {
	for _, c := range []struct {
		nodes     int
		meshLimit int
		subnet    string
		warm      time.Duration
	}{
		{100, 0, "127.77.240", 90 * time.Second}, // coordinates, the default above 16 nodes
		{30, -1, "127.77.241", 30 * time.Second}, // full mesh, the 30-node case
	} {
		mode := "coordinates"
		if c.meshLimit < 0 {
			mode = "mesh"
		}
		b.Run(fmt.Sprintf("nodes=%d/%s", c.nodes, mode), func(b *testing.B) {
			for range b.N {
				emulatedFleet(b, c.nodes, c.meshLimit, c.subnet, c.warm)
			}
		})
	}
}

func emulatedFleet(b *testing.B, nodes, meshLimit int, subnet string, warm time.Duration) {
	w := newWorld(nodes, 31)
	n := linkemu.NewNetwork()
	n.Seed(32)
	names := make([]string, nodes)
	addrs := map[string]string{}
	lns := make([]net.Listener, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%03d", i)
		ip := subnet + "." + strconv.Itoa(i+1)
		n.AddNode(names[i], ip)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			b.Fatal(err)
		}
		lns[i], addrs[names[i]] = ln, ln.Addr().String()
	}
	truth := func(i, j int) time.Duration { return seconds(w.rtt(i, j)) }
	for i := range names {
		for j := range i {
			n.SetLink(names[i], names[j], linkemu.Link{RTT: truth(i, j)})
		}
	}
	agents := make([]*Agent, nodes)
	for i := range names {
		a, err := New(Config{Node: names[i], Listener: lns[i], Peers: addrs, Dial: n.Dialer(names[i]), MeshLimit: meshLimit})
		if err != nil {
			b.Fatal(err)
		}
		agents[i] = a
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for _, a := range agents {
		wg.Go(func() { a.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()

	complete := func() bool {
		for _, a := range agents {
			for _, p := range names {
				if p == a.cfg.Node {
					continue
				}
				if _, ok := a.RTT(p); !ok {
					return false
				}
			}
		}
		return true
	}
	var full time.Duration
	for time.Since(start) < warm {
		if full == 0 && complete() {
			full = time.Since(start)
		}
		time.Sleep(250 * time.Millisecond) // a benchmark watching the wall clock, not a test
	}
	if full == 0 && complete() {
		full = time.Since(start)
	}

	count := func() (total float64) {
		for _, a := range agents {
			a.mu.Lock()
			total += float64(a.probes)
			a.mu.Unlock()
		}
		return total
	}
	failures := func() (total uint64) {
		for _, a := range agents {
			a.mu.Lock()
			for _, f := range a.failures {
				total += f
			}
			a.mu.Unlock()
		}
		return total
	}
	const window = 20 * time.Second
	cpu0, probes0, t0 := cpuTime(), count(), time.Now()
	time.Sleep(window)
	cpu1, probes1, t1 := cpuTime(), count(), time.Now()
	elapsed := t1.Sub(t0).Seconds()

	var measured, estimated []float64
	for i, a := range agents {
		row := a.Matrix()[a.cfg.Node]
		for j, p := range names {
			e, ok := row[p]
			if i == j || !ok || !e.Known() {
				continue
			}
			errMs := (e.Duration() - truth(i, j)).Abs().Seconds() * 1e3
			if e.Estimated {
				estimated = append(estimated, errMs)
			} else {
				measured = append(measured, errMs)
			}
		}
	}
	q := func(xs []float64, p float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		s := slices.Sorted(slices.Values(xs))
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	all := append(slices.Clone(measured), estimated...)
	fullS := "never"
	if full > 0 {
		fullS = full.Round(100 * time.Millisecond).String()
	}
	cores := (cpu1 - cpu0).Seconds() / elapsed
	rate := (probes1 - probes0) / elapsed
	b.ReportMetric(q(all, 0.5), "median-abs-err-ms")
	b.ReportMetric(q(all, 0.95), "p95-abs-err-ms")
	b.ReportMetric(rate/float64(nodes), "probes/node/s")
	b.ReportMetric(cores, "cores-idle")
	b.Logf("%d agents (%s): every agent has every RTT after %s; idle %.2f cores, RSS %d MB; %.0f probes/s (%.2f per node), %d failed probes in all; "+
		"row error vs configured RTT: all %d entries median %.2f ms p95 %.2f ms; measured %d entries median %.2f ms p95 %.2f ms; estimated %d entries median %.2f ms p95 %.2f ms",
		nodes, map[bool]string{true: "mesh", false: "coordinates"}[meshLimit < 0], fullS, cores, rssMB(), rate, rate/float64(nodes), failures(),
		len(all), q(all, 0.5), q(all, 0.95), len(measured), q(measured, 0.5), q(measured, 0.95), len(estimated), q(estimated, 0.5), q(estimated, 0.95))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb / 1024
		}
	}
	return 0
}
