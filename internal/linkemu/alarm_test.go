package linkemu

import (
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Alarms fire at or after their time, never before, whatever order they
// were set in; a stopped alarm never fires.
func TestAfter_neverEarly(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	var wg sync.WaitGroup
	early := make(chan time.Duration, 200)
	for range 200 {
		at := start.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			due, stop := after(at)
			defer stop()
			<-due
			if now := time.Now(); now.Before(at) {
				early <- at.Sub(now)
			}
		}()
	}
	wg.Wait()
	close(early)
	for d := range early {
		t.Errorf("an alarm fired %v early", d)
	}

	stopped, stop := after(time.Now().Add(time.Millisecond))
	stop()
	later, stopLater := after(time.Now().Add(3 * time.Millisecond))
	defer stopLater()
	<-later
	select {
	case <-stopped:
		t.Error("a stopped alarm fired")
	default:
	}
}

// A 1 ms link never delivers a round trip in less than 1 ms. How close to
// 1 ms it comes is a figure for BenchmarkLinkRTT, not an assertion.
func TestWrap_smallLinkNeverShort(t *testing.T) {
	t.Parallel()
	const rtt = time.Millisecond
	c, s := tcpPair(t)
	w := Wrap(c, Link{RTT: rtt}, nil)
	defer w.Close()
	defer s.Close()
	go io.Copy(s, s)
	msg, back := []byte("ping"), make([]byte, 4)
	var total time.Duration
	const n = 50
	for i := range n {
		start := time.Now()
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(w, back); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if d < rtt {
			t.Errorf("round trip %d took %v, less than the link's %v", i, d, rtt)
		}
		total += d
	}
	mean := total / n
	t.Logf("%d round trips over a %v link: mean %v", n, rtt, mean)
	if mean > 20*rtt {
		t.Errorf("mean round trip %v, more than 20 times the link's %v", mean, rtt)
	}
}
