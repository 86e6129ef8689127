package fleet

import (
	"bytes"

	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/placement"
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
	key     string
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

// reconcile asks the policies what to change and starts doing it.
func (f *Fleet) reconcile() {
	now := time.Now()
	var starts, stops []*replicaProc
	changed := map[string]bool{}
	f.mu.Lock()
	used := map[string]int{}
	for _, rt := range f.fns {
		for _, r := range rt.replicas {
			used[r.node]++
		}
	}
	for _, key := range sortedKeys(f.fns) {
		rt := f.fns[key]
		var plan placement.Plan
		if rt.fixed != nil {
			plan = fixedPlan(rt)
		} else {
			ready := 0
			for _, r := range rt.replicas {
				if r.getState() == StateReady {
					ready++
				}
			}
			d := rt.scaler.Decide(now, ready)
			if !sameDecision(d, rt.decision) {
				f.log.Debug("autoscaler decision", "function", key, "total", d.Total, "perOrigin", d.PerOrigin,
					"reason", d.Reason, "stable", d.StableConcurrency, "panic", d.Panic)
			}
			rt.decision = d
			plan = f.place.Plan(f.placementInput(rt, used))
			rt.unplaced = plan.Unplaced
		}
		for _, a := range plan.Add {
			r := f.newReplica(rt, key, a.Node, a.Origin, now)
			rt.replicas[r.name] = r
			used[r.node]++
			starts = append(starts, r)
		}
		if len(plan.Remove) > 0 && starting(rt) && readyAfter(rt, plan.Remove) < wanted(rt) {
			// Make before break: replicas being replaced keep serving
			// until their successors are ready; the removal comes in a
			// later round.
			plan.Remove = nil
		}
		for _, name := range plan.Remove {
			if r, ok := rt.replicas[name]; ok && r.getState() != StateStopping {
				r.setState(StateStopping)
				stops = append(stops, r)
				changed[key] = true
			}
		}
	}
	f.mu.Unlock()
	for key := range changed {
		f.publish(key)
	}
	for _, r := range starts {
		f.log.Info("starting replica", "function", r.key, "replica", r.name, "node", r.node, "for", r.origin)
		go f.runReplica(r)
	}
	for _, r := range stops {
		f.log.Info("stopping replica", "function", r.key, "replica", r.name, "node", r.node)
		go r.stop(30 * time.Second)
	}
}

// starting reports whether any replica of the function is still starting;
// f.mu held.
func starting(rt *fnRuntime) bool {
	for _, r := range rt.replicas {
		if r.getState() == StateStarting {
			return true
		}
	}
	return false
}

// readyAfter counts the ready replicas left once remove is done; f.mu held.
func readyAfter(rt *fnRuntime, remove []string) int {
	gone := map[string]bool{}
	for _, n := range remove {
		gone[n] = true
	}
	n := 0
	for name, r := range rt.replicas {
		if !gone[name] && r.getState() == StateReady {
			n++
		}
	}
	return n
}

// wanted is the function's wanted total; f.mu held.
func wanted(rt *fnRuntime) int {
	if rt.fixed == nil {
		return rt.decision.Total
	}
	n := 0
	for _, c := range rt.fixed {
		n += c
	}
	return n
}

func sameDecision(a, b autoscale.Decision) bool {
	if a.Total != b.Total || a.Panic != b.Panic || len(a.PerOrigin) != len(b.PerOrigin) {
		return false
	}
	for k, v := range a.PerOrigin {
		if b.PerOrigin[k] != v {
			return false
		}
	}
	return true
}

// placementInput describes the fleet for the placement policy; f.mu held.
func (f *Fleet) placementInput(rt *fnRuntime, used map[string]int) placement.Input {
	in := placement.Input{Want: rt.decision.PerOrigin}
	allowed := map[string]bool{}
	for _, n := range rt.spec.Nodes {
		allowed[n] = true
	}
	for _, n := range f.tb.Nodes {
		capacity := n.Capacity
		if len(allowed) > 0 && !allowed[n.Name] {
			capacity = 0 // node affinity rules it out
		}
		in.Nodes = append(in.Nodes, placement.Node{Name: n.Name, Capacity: capacity, Used: used[n.Name]})
	}
	for _, r := range rt.replicas {
		st := r.getState()
		if st == StateStopping || st == StateFailed {
			continue
		}
		in.Replicas = append(in.Replicas, placement.Replica{Name: r.name, Node: r.node, Origin: r.origin, Ready: st == StateReady, Created: r.created})
	}
	sort.Slice(in.Replicas, func(i, j int) bool { return in.Replicas[i].Name < in.Replicas[j].Name })
	in.Cost = placement.MeanCost(f.costFunc(rt), f.nodeNames())
	return in
}

// unknownRTT stands in for a latency not measured yet: such a node is
// treated as far away until the agents know better.
const unknownRTT = time.Second

// defaultProcessing is assumed where a function has not been measured at
// all yet; the same everywhere, so only latency decides.
const defaultProcessing = time.Millisecond

// costFunc is the placement cost: measured RTT from the origin plus the
// function's processing time on the node. A node where the function has not
// run yet is assumed as fast as the average of the nodes where it has, so an
// unmeasured node looks neither better nor worse than the rest.
func (f *Fleet) costFunc(rt *fnRuntime) placement.Cost {
	fallback := defaultProcessing
	var sum time.Duration
	n := 0
	for _, est := range rt.processing {
		if est.count > 0 {
			sum += est.mean
			n++
		}
	}
	if n > 0 {
		fallback = sum / time.Duration(n)
	}
	return func(origin, nodeName string) time.Duration {
		var rtt time.Duration
		if origin != nodeName {
			o, ok := f.byName[origin]
			if !ok {
				return unknownRTT
			}
			d, ok := o.agent.RTT(nodeName)
			if !ok {
				d = unknownRTT
			}
			rtt = d
		}
		p := fallback
		if est, ok := rt.processing[nodeName]; ok && est.count > 0 {
			p = est.mean
		}
		return rtt + p
	}
}

// fixedPlan converges on pinned per-node counts; f.mu held.
func fixedPlan(rt *fnRuntime) placement.Plan {
	var plan placement.Plan
	byNode := map[string][]*replicaProc{}
	for _, r := range rt.replicas {
		if st := r.getState(); st != StateStopping && st != StateFailed {
			byNode[r.node] = append(byNode[r.node], r)
		}
	}
	for _, nodeName := range sortedKeys(rt.fixed) {
		want, have := rt.fixed[nodeName], len(byNode[nodeName])
		for i := have; i < want; i++ {
			plan.Add = append(plan.Add, placement.Add{Node: nodeName, Origin: nodeName})
		}
	}
	for nodeName, rs := range byNode {
		want := rt.fixed[nodeName]
		sort.Slice(rs, func(i, j int) bool { return rs[i].created.After(rs[j].created) })
		for i := 0; i < len(rs)-want; i++ {
			plan.Remove = append(plan.Remove, rs[i].name)
		}
	}
	return plan
}

const suffixChars = "bcdfghjklmnpqrstvwxz2456789"

func (f *Fleet) newReplica(rt *fnRuntime, key, nodeName, origin string, now time.Time) *replicaProc {
	var name string
	for {
		b := make([]byte, 5)
		for i := range b {
			b[i] = suffixChars[f.rng.IntN(len(suffixChars))]
		}
		name = rt.spec.Name + "-" + nodeName + "-" + string(b)
		if _, taken := rt.replicas[name]; !taken {
			break
		}
	}
	return &replicaProc{f: f, key: key, name: name, node: nodeName, origin: origin, created: now,
		state: StateStarting, exited: make(chan struct{})}
}

// publish tells every gateway a function's ready replicas.
func (f *Fleet) publish(key string) {
	f.mu.Lock()
	rt, ok := f.fns[key]
	var ready []gateway.ReplicaInfo
	if ok {
		for _, name := range sortedKeys(rt.replicas) {
			r := rt.replicas[name]
			if r.getState() == StateReady {
				ready = append(ready, gateway.ReplicaInfo{Name: r.name, Node: r.node, Address: r.addr})
			}
		}
	}
	f.mu.Unlock()
	if !ok {
		return
	}
	for _, n := range f.nodes {
		n.gw.SetReplicas(key, ready)
	}
}

// forget removes a replica that has ended.
func (f *Fleet) forget(r *replicaProc) {
	f.mu.Lock()
	if rt, ok := f.fns[r.key]; ok && rt.replicas[r.name] == r {
		delete(rt.replicas, r.name)
	}
	f.mu.Unlock()
	f.publish(r.key)
	// Keep-alive connections to the ended process are dead; a new replica
	// may soon listen on the same port and must not inherit them.
	for _, n := range f.nodes {
		n.transport.CloseIdleConnections()
	}
	f.Kick()
}

// runReplica starts the process, waits for readiness, and watches it.
func (f *Fleet) runReplica(r *replicaProc) {
	if err := f.startProcess(r); err != nil {
		f.log.Error("replica failed to start", "function", r.key, "replica", r.name, "err", err)
		r.setState(StateFailed)
		close(r.exited)
		f.forget(r)
		return
	}
	go func() {
		err := r.cmd.Wait()
		f.procs.leaderExited(r.cmd.Process.Pid)
		close(r.exited)
		if st := r.getState(); st != StateStopping {
			f.log.Error("replica exited", "function", r.key, "replica", r.name, "err", err, "stderr", r.stderr.String())
			r.setState(StateFailed)
		}
		f.forget(r)
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
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.log.Error("replica never became ready", "function", r.key, "replica", r.name, "after", readyTimeout)
			r.setState(StateStopping)
			r.stop(time.Second)
			return
		}
	}
	r.mu.Lock()
	if r.state != StateStarting {
		r.mu.Unlock()
		return
	}
	r.state = StateReady
	r.mu.Unlock()
	f.log.Info("replica ready", "function", r.key, "replica", r.name, "node", r.node, "after", time.Since(r.created).Round(time.Millisecond))
	f.publish(r.key)
}

func (f *Fleet) startProcess(r *replicaProc) error {
	f.mu.Lock()
	rt, ok := f.fns[r.key]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("function deleted")
	}
	spec := rt.spec
	f.mu.Unlock()
	n := f.byName[r.node]
	port, err := freePort(n.spec.Address)
	if err != nil {
		return err
	}
	r.addr = net.JoinHostPort(n.spec.Address, strconv.Itoa(port))
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
		"K_REVISION="+spec.Name+"-00001",
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
	path := ""
	f.mu.Lock()
	if rt, ok := f.fns[r.key]; ok {
		path = rt.spec.ReadinessPath
	}
	f.mu.Unlock()
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
	r.f.publish(r.key)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		busy := 0
		for _, n := range r.f.nodes {
			busy += n.gw.InFlight(r.key, r.name)
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
