package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Replicas leave nothing behind, whatever way the fleet ends:
//
//   - every replica runs in its own process group (Setpgid), so one signal
//     reaches its children too, and the kernel kills the replica itself
//     if the fleet dies (Pdeathsig);
//   - the fleet is a child subreaper (PR_SET_CHILD_SUBREAPER): a replica's
//     orphaned children are re-parented to the fleet, not to init, so the
//     fleet can reap them;
//   - when a replica's process ends, its whole group is killed and reaped
//     (a `sh -c "server & …"` leaves no server behind); Close kills every
//     group left;
//   - a watchdog process holds the read end of a pipe from the fleet and
//     the list of groups; when the fleet ends in any way, even SIGKILL, the
//     pipe closes and the watchdog kills every group still listed.
//
// A process that leaves its group (setsid, setpgid) is out of reach, as
// it is for a container runtime without cgroups.

// envWatchdog makes this executable run as the fleet's watchdog.
const envWatchdog = "KANTAI_FLEET_WATCHDOG"

func init() {
	// The watchdog is this same executable (kantai, or a test binary that
	// links the fleet), started with envWatchdog set; it never reaches
	// main.
	if os.Getenv(envWatchdog) == "1" {
		os.Exit(runWatchdog(os.Stdin))
	}
}

// runWatchdog reads "+pgid" and "-pgid" lines until EOF, then kills every
// process group still listed.
func runWatchdog(in io.Reader) int {
	// The terminal's Ctrl-C is for the fleet; the watchdog ends when the
	// fleet has.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	groups := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return 0
}

// procGroups is the fleet's list of replica process groups.
type procGroups struct {
	log *slog.Logger

	mu       sync.Mutex
	groups   map[int]bool
	closed   bool
	watchdog *exec.Cmd
	pipe     *os.File // write end; the watchdog reads the other
}

func newProcGroups(log *slog.Logger) *procGroups {
	p := &procGroups{log: log, groups: map[int]bool{}}
	if err := setChildSubreaper(); err != nil {
		log.Warn("cannot become a child subreaper; orphans of replicas are re-parented to init", "err", err)
	}
	if err := p.startWatchdog(); err != nil {
		log.Warn("no watchdog: if the fleet is killed, children of replicas may survive it", "err", err)
	}
	return p
}

// setChildSubreaper makes this process the subreaper of its descendants.
func setChildSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

func (p *procGroups) startWatchdog() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("watchdog pipe: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envWatchdog+"=1")
	cmd.Stdin = r
	// Its own group: signals for the fleet's group (Ctrl-C) do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("starting the watchdog: %w", err)
	}
	r.Close()
	p.watchdog, p.pipe = cmd, w
	return nil
}

// tell sends one line to the watchdog; p.mu held.
func (p *procGroups) tell(line string) {
	if p.pipe == nil {
		return
	}
	if _, err := io.WriteString(p.pipe, line+"\n"); err != nil {
		p.log.Warn("watchdog gone; children of replicas may survive a killed fleet", "err", err)
		p.pipe.Close()
		p.pipe = nil
	}
}

// errClosed means the fleet is closing and starts nothing more.
var errClosed = errors.New("fleet is stopping")

// add lists the group led by a replica just started. After close the
// group is killed at once and add fails.
func (p *procGroups) add(pgid int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return errClosed
	}
	p.groups[pgid] = true
	p.tell("+" + strconv.Itoa(pgid))
	return nil
}

// leaderExited is called once the replica leading a group has been
// waited for: whatever remains in the group is killed and reaped.
func (p *procGroups) leaderExited(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	reapGroup(pgid)
	p.mu.Lock()
	delete(p.groups, pgid)
	p.tell("-" + strconv.Itoa(pgid))
	p.mu.Unlock()
}

// reapGroup collects every child of this process in group pgid. The
// leader has been collected by its exec.Cmd; the rest are its
// descendants, re-parented here (subreaper) and killed.
func reapGroup(pgid int) {
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-pgid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: none left
			return
		}
	}
}

// close kills every group still listed and lets the watchdog go.
func (p *procGroups) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for pgid := range p.groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if p.pipe != nil {
		p.pipe.Close() // the watchdog kills what is listed (nothing alive now) and exits
		p.pipe = nil
	}
	if p.watchdog != nil {
		_ = p.watchdog.Wait()
	}
}
