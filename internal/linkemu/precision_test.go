package linkemu

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pingPong sends n small messages over an emulated link to an echo server,
// one at a time, and returns the mean round-trip time.
func pingPong(tb testing.TB, link Link, n int) time.Duration {
	tb.Helper()
	c, s := tcpPair(tb)
	w := Wrap(c, link, seeded(1))
	defer w.Close()
	defer s.Close()
	go io.Copy(s, s) // echo
	msg, back := []byte("ping"), make([]byte, 4)
	var total time.Duration
	for range n {
		start := time.Now()
		if _, err := w.Write(msg); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(w, back); err != nil {
			tb.Fatal(err)
		}
		total += time.Since(start)
	}
	return total / time.Duration(n)
}

// BenchmarkLinkRTT prints configured against measured round-trip times of
// small links (ping-pongs of 4 bytes over loopback TCP, one at a time),
// with the precise alarm clock and with Go's timers as before it:
//
//	go test -run '^$' -bench LinkRTT -benchtime 200x ./internal/linkemu
//
// rtt-ms is the measured mean; over-ms how much it exceeds the configured
// RTT (loopback TCP itself adds tens of microseconds); cpu-us/rt the CPU
// time the whole process spent per round trip (both ends, spinning
// included).
func BenchmarkLinkRTT(b *testing.B) {
	for _, clock := range []string{"precise", "go-timers"} {
		for _, rtt := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond} {
			b.Run(fmt.Sprintf("clock=%s/rtt=%v", clock, rtt), func(b *testing.B) {
				goTimersOnly.Store(clock == "go-timers")
				defer goTimersOnly.Store(false)
				cpu := cpuTime()
				mean := pingPong(b, Link{RTT: rtt}, b.N)
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e3, "cpu-us/rt")
				b.ReportMetric(float64(mean)/1e6, "rtt-ms")
				b.ReportMetric(float64(mean-rtt)/1e6, "over-ms")
				b.ReportMetric(0, "ns/op")
				b.Logf("%s: configured %v, measured %.3f ms over %d round trips", clock, rtt, float64(mean)/1e6, b.N)
			})
		}
	}
}

// BenchmarkAlarm prints how late the alarm clock fires (late-us), for
// waits of several lengths.
func BenchmarkAlarm(b *testing.B) {
	for _, d := range []time.Duration{100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond} {
		b.Run(fmt.Sprintf("wait=%v", d), func(b *testing.B) {
			var late time.Duration
			for range b.N {
				at := time.Now().Add(d)
				due, stop := after(at)
				<-due
				late += time.Since(at)
				stop()
			}
			b.ReportMetric(float64(late)/float64(b.N)/1e3, "late-us")
			b.ReportMetric(0, "ns/op")
		})
	}
}
