package fleet

import (
	"bytes"

	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/gateway"
)

// Replica states.
const (
	StateStarting = "Starting"
	StateReady    = "Ready"
	StateStopping = "Stopping"
	StateFailed   = "Failed"
)

// readyTimeout bounds a replica's start; one that does not answer its
// probe by then is stopped and replaced.
const readyTimeout = 30 * time.Second

type replicaProc struct {
	f       *Fleet
	rev     *revisionRT
	name    string
	node    string
	origin  string
	addr    string
	created time.Time

	mu     sync.Mutex
	state  string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr tailBuffer
}

func (r *replicaProc) getState() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *replicaProc) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

// reconcile runs every revision's control step and starts converging on
// its output: new replicas start, surplus ones drain and stop.
func (f *Fleet) reconcile(obs observations) {
	f.publishRoutes()
	now := time.Now()
	var starts, stops []*replicaProc
	changed := map[*revisionRT]bool{}
	push := map[string]map[string]time.Duration{}
	f.mu.Lock()
	used := map[string]int{}
	for _, svc := range f.svcs {
		for _, rev := range svc.revisions {
			for _, r := range rev.replicas {
				used[r.node]++
			}
		}
	}
	for _, key := range sortedKeys(f.svcs) {
		svc := f.svcs[key]
		for _, rev := range svc.revisions {
			in := control.Input{Now: now, Demand: obs.demand[rev.key], Service: obs.service[rev.key],
				Nodes: f.controlNodes(rev, used), Replicas: f.liveReplicas(rev), RTT: f.rtt, Unreachable: !rev.routed}
			if rev == svc.latest() && svc.fixed != nil {
				in.Fixed = svc.fixed
			}
			out := rev.ctl.Step(in)
			if out.Reason != rev.out.Reason || out.Total() != rev.out.Total() {
				f.log.Debug("control step", "revision", rev.key, "desired", out.Desired, "reason", out.Reason,
					"stable", out.Decision.StableConcurrency, "panic", out.Decision.Panic)
			}
			rev.out = out
			if len(out.Processing) > 0 {
				push[rev.key] = out.Processing
			}
			ch := control.Diff(out, in.Replicas)
			for _, a := range ch.Start {
				r := f.newReplica(rev, a.Node, a.Origin, now)
				rev.replicas[r.name] = r
				used[r.node]++
				starts = append(starts, r)
			}
			for _, name := range ch.Stop {
				if r, ok := rev.replicas[name]; ok && r.getState() != StateStopping {
					r.setState(StateStopping)
					stops = append(stops, r)
					changed[rev] = true
				}
			}
		}
	}
	f.mu.Unlock()
	for rev := range changed {
		f.publish(rev)
	}
	for key, perNode := range push {
		for _, n := range f.nodes {
			n.gw.SetProcessing(key, perNode)
		}
	}
	f.starting.Add(len(starts))
	for _, r := range starts {
		f.log.Info("starting replica", "revision", r.rev.key, "replica", r.name, "node", r.node, "for", r.origin)
		go f.runReplica(r)
	}
	for _, r := range stops {
		f.log.Info("stopping replica", "revision", r.rev.key, "replica", r.name, "node", r.node)
		go r.stop(30 * time.Second)
	}
}

// liveReplicas lists a revision's replicas that are starting or ready, on
// nodes that are up; f.mu held.
func (f *Fleet) liveReplicas(rev *revisionRT) []control.Replica {
	out := make([]control.Replica, 0, len(rev.replicas))
	for _, r := range rev.replicas {
		if f.NodeDown(r.node) {
			continue
		}
		switch r.getState() {
		case StateReady:
			out = append(out, control.Replica{Name: r.name, Node: r.node, Origin: r.origin, Ready: true, Created: r.created})
		case StateStarting:
			out = append(out, control.Replica{Name: r.name, Node: r.node, Origin: r.origin, Created: r.created})
		}
	}
	return out
}

// controlNodes describes the testbed's nodes for a revision's step: node
// affinity, or the node being down, rules a node out by giving it no
// capacity; f.mu held.
func (f *Fleet) controlNodes(rev *revisionRT, used map[string]int) []control.Node {
	allowed := map[string]bool{}
	for _, n := range rev.spec.Nodes {
		allowed[n] = true
	}
	out := make([]control.Node, 0, len(f.tb.Nodes))
	for _, n := range f.tb.Nodes {
		capacity := n.Capacity
		if len(allowed) > 0 && !allowed[n.Name] || f.NodeDown(n.Name) {
			capacity = 0
		}
		out = append(out, control.Node{Name: n.Name, Capacity: capacity, Used: used[n.Name], Speed: n.Speed})
	}
	return out
}

// rtt is the latency matrix as the origin's agent measured it.
func (f *Fleet) rtt(from, to string) (time.Duration, bool) {
	n, ok := f.byName[from]
	if !ok {
		return 0, false
	}
	return n.agent.RTT(to)
}

const suffixChars = "bcdfghjklmnpqrstvwxz2456789"

// newReplica names a replica <service>-<node>-<suffix>; f.mu held.
func (f *Fleet) newReplica(rev *revisionRT, nodeName, origin string, now time.Time) *replicaProc {
	var name string
	for {
		b := make([]byte, 5)
		for i := range b {
			b[i] = suffixChars[f.rng.IntN(len(suffixChars))]
		}
		name = rev.spec.Name + "-" + nodeName + "-" + string(b)
		if _, taken := rev.replicas[name]; !taken {
			break
		}
	}
	return &replicaProc{f: f, rev: rev, name: name, node: nodeName, origin: origin, created: now,
		state: StateStarting, exited: make(chan struct{})}
}

// publish tells every gateway a revision's ready replicas.
func (f *Fleet) publish(rev *revisionRT) {
	f.mu.Lock()
	f.publishLocked(rev)
	f.mu.Unlock()
}

// publishLocked is publish with f.mu held, which orders publications (a
// stale list never overwrites a newer one) and keeps the status from
// showing a replica ready before every gateway can choose it.
func (f *Fleet) publishLocked(rev *revisionRT) {
	var ready []gateway.ReplicaInfo
	for _, name := range sortedKeys(rev.replicas) {
		r := rev.replicas[name]
		if r.getState() == StateReady && !f.NodeDown(r.node) {
			ready = append(ready, gateway.ReplicaInfo{Name: r.name, Node: r.node, Address: r.addr})
		}
	}
	for _, n := range f.nodes {
		n.gw.SetReplicas(rev.key, ready)
	}
}

// forget removes a replica that has ended.
func (f *Fleet) forget(r *replicaProc) {
	f.mu.Lock()
	if r.rev.replicas[r.name] == r {
		delete(r.rev.replicas, r.name)
	}
	f.mu.Unlock()
	f.publish(r.rev)
	// Keep-alive connections to the ended process are dead; a new replica
	// may soon listen on the same port and must not inherit them.
	for _, n := range f.nodes {
		n.transport.CloseIdleConnections()
	}
	f.Kick()
}

// runReplica starts the process, waits for readiness, and watches it.
func (f *Fleet) runReplica(r *replicaProc) {
	defer f.starting.Done()
	if err := f.startProcess(r); err != nil {
		f.log.Error("replica failed to start", "revision", r.rev.key, "replica", r.name, "err", err)
		r.setState(StateFailed)
		f.forget(r)
		close(r.exited)
		return
	}
	go func() {
		err := r.cmd.Wait()
		f.procs.leaderExited(r.cmd.Process.Pid)
		if st := r.getState(); st != StateStopping {
			f.log.Error("replica exited", "revision", r.rev.key, "replica", r.name, "err", err, "stderr", r.stderr.String())
			r.setState(StateFailed)
		}
		// Forgotten before exited closes, so whoever waited for the exit
		// finds the replica gone from the status.
		f.forget(r)
		close(r.exited)
	}()
	probe := f.readinessProbe(r)
	deadline := time.Now().Add(readyTimeout)
	for {
		if probe() {
			break
		}
		select {
		case <-r.exited:
			return
		case <-f.ctx.Done():
			r.stop(time.Second)
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.log.Error("replica never became ready", "revision", r.rev.key, "replica", r.name, "after", readyTimeout)
			r.setState(StateStopping)
			r.stop(time.Second)
			return
		}
	}
	f.mu.Lock()
	r.mu.Lock()
	if r.state != StateStarting {
		r.mu.Unlock()
		f.mu.Unlock()
		return
	}
	r.state = StateReady
	r.mu.Unlock()
	f.publishLocked(r.rev)
	first := !r.rev.ready
	r.rev.ready = true
	f.mu.Unlock()
	f.log.Info("replica ready", "revision", r.rev.key, "replica", r.name, "node", r.node, "after", time.Since(r.created).Round(time.Millisecond))
	if first { // a latestRevision route may move to it
		f.publishRoutes()
		f.Kick()
	}
}

func (f *Fleet) startProcess(r *replicaProc) error {
	spec := r.rev.spec
	n := f.byName[r.node]
	port, err := freePort(n.spec.Address)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(n.spec.Address, strconv.Itoa(port))
	r.mu.Lock() // status readers look at addr while the process starts
	r.addr = addr
	r.mu.Unlock()
	argv, mapped := f.tb.Command(spec.Image)
	if !mapped {
		argv = append(append([]string(nil), f.opts.FunctionCommand...), "hello")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	env := os.Environ()
	for _, e := range spec.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	env = append(env,
		function.EnvPort+"="+strconv.Itoa(port),
		function.EnvAddress+"="+n.spec.Address,
		function.EnvReplica+"="+r.name,
		function.EnvNode+"="+r.node,
		function.EnvSpeed+"="+strconv.FormatFloat(n.spec.Speed, 'g', -1, 64),
		function.EnvWorkers+"="+strconv.Itoa(spec.Workers),
		function.EnvProcessing+"="+spec.Processing.String(),
		"K_SERVICE="+spec.Name,
		"K_CONFIGURATION="+spec.Name,
		"K_REVISION="+r.rev.name,
	)
	cmd.Env = env
	cmd.Stderr = &r.stderr
	// A replica's child may hold stderr open after the replica ended; Wait
	// must still return, so its group can be killed.
	cmd.WaitDelay = time.Second
	// Own process group so signals reach the replica's children too, and
	// the kernel kills it if the fleet dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %q: %w", argv[0], err)
	}
	if err := f.procs.add(cmd.Process.Pid); err != nil {
		_ = cmd.Wait()
		return err
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	return nil
}

func (f *Fleet) readinessProbe(r *replicaProc) func() bool {
	path := r.rev.spec.ReadinessPath
	if path == "" { // Knative's default: the port accepts connections
		return func() bool {
			c, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
	}
	client := &http.Client{Timeout: time.Second}
	return func() bool {
		resp, err := client.Get("http://" + r.addr + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	}
}

// stop drains and ends a replica: gateways stop choosing it (the caller
// has published that), requests in flight finish, then the process gets
// SIGTERM, and SIGKILL after grace.
func (r *replicaProc) stop(grace time.Duration) {
	r.setState(StateStopping)
	r.f.publish(r.rev)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		busy := 0
		for _, n := range r.f.nodes {
			busy += n.gw.InFlight(r.rev.key, r.name)
		}
		if busy == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(time.Until(deadline) + time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
}

func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last few KiB a process wrote, for error reports.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - 4096; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
