package linkemu

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfd is a Linux timerfd read through the runtime's poller: the
// kernel's high-resolution timer wakes the reader within tens of
// microseconds, where Go's own timers round waits up to the millisecond.
type timerfd struct {
	fd int
	f  *os.File
}

func newSysTimer() sysTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return &timerfd{fd: fd, f: os.NewFile(uintptr(fd), "linkemu-alarm")}
}

func (t *timerfd) arm(d time.Duration) {
	d = max(d, 1) // zero would disarm the timer
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	_ = unix.TimerfdSettime(t.fd, 0, &spec, nil)
}

func (t *timerfd) wait() {
	var buf [8]byte
	_, _ = t.f.Read(buf[:])
}
