package linkemu

import (
	"container/heap"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Go's timers wake up on the runtime's poller, which waits in whole
// milliseconds: a 400 µs wait takes about 1 ms, so a 1 ms link measured
// 2.4 ms RTT. Emulated delays therefore wait on an alarm clock with
// microsecond precision where the system has one (a timerfd on Linux, read
// through the runtime's poller, so waiting costs no thread), and the clock
// spins for the last spinLead before a deadline to absorb the wake-up
// latency. One goroutine serves every alarm of the process, firing all that
// are due at each wake-up; it exits when no alarm is pending. Elsewhere the
// alarms are Go timers.

// spinLead is how long before a deadline the alarm clock wakes and then
// spins; it bounds the CPU spent spinning to spinLead per wake-up.
const spinLead = 100 * time.Microsecond

// alarm is one pending wake-up.
type alarm struct {
	at    time.Time
	ch    chan struct{}
	index int // in the heap; -1 once fired or stopped
	timer *time.Timer
}

// goTimersOnly makes alarms Go timers even where a precise clock exists,
// for benchmarks that compare the two; KANTAI_LINKEMU_GO_TIMERS=1 sets it
// for a whole process.
var goTimersOnly atomic.Bool

func init() {
	if os.Getenv("KANTAI_LINKEMU_GO_TIMERS") == "1" {
		goTimersOnly.Store(true)
	}
}

// after returns a channel closed at (never before) at, and a function that
// cancels the alarm.
func after(at time.Time) (<-chan struct{}, func()) {
	a := &alarm{at: at, ch: make(chan struct{}), index: -1}
	if c := preciseClock(); c != nil && !goTimersOnly.Load() {
		c.add(a)
		return a.ch, func() { c.remove(a) }
	}
	a.timer = time.AfterFunc(time.Until(at), func() { close(a.ch) })
	return a.ch, func() { a.timer.Stop() }
}

// clock is the precise alarm clock: a heap of alarms and a system timer
// armed for the earliest.
type clock struct {
	mu      sync.Mutex
	h       alarmHeap
	running bool
	timer   sysTimer
}

// sysTimer is a one-shot system timer with microsecond precision.
type sysTimer interface {
	// arm makes wait return after d (at least 1ns).
	arm(d time.Duration)
	// wait blocks until the timer has fired since the last wait.
	wait()
}

var (
	clockOnce sync.Once
	theClock  *clock
)

func preciseClock() *clock {
	clockOnce.Do(func() {
		if t := newSysTimer(); t != nil {
			theClock = &clock{timer: t}
		}
	})
	return theClock
}

func (c *clock) add(a *alarm) {
	c.mu.Lock()
	defer c.mu.Unlock()
	heap.Push(&c.h, a)
	if a.index == 0 {
		c.timer.arm(time.Until(a.at) - spinLead)
	}
	if !c.running {
		c.running = true
		go c.loop()
	}
}

func (c *clock) remove(a *alarm) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.index < 0 {
		return
	}
	heap.Remove(&c.h, a.index)
	if len(c.h) == 0 {
		c.timer.arm(0) // let the loop see it has nothing left and end
	}
}

func (c *clock) loop() {
	c.mu.Lock()
	for {
		now := time.Now()
		for len(c.h) > 0 {
			a := c.h[0]
			d := a.at.Sub(now)
			if d > spinLead {
				break
			}
			if d > 0 {
				// Due within spinLead: spin, without the lock, so that
				// alarms can be added meanwhile.
				c.mu.Unlock()
				for time.Now().Before(a.at) {
					runtime.Gosched()
				}
				c.mu.Lock()
				now = time.Now()
				continue
			}
			heap.Pop(&c.h)
			close(a.ch)
		}
		if len(c.h) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.timer.arm(c.h[0].at.Sub(now) - spinLead)
		c.mu.Unlock()
		c.timer.wait()
		c.mu.Lock()
	}
}

type alarmHeap []*alarm

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *alarmHeap) Push(x any) {
	a := x.(*alarm)
	a.index = len(*h)
	*h = append(*h, a)
}
func (h *alarmHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	a.index = -1
	return a
}
