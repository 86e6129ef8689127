package fleet

import (
	"fmt"
	"math"
	"strings"
	"time"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/manifest"
)

type fnRuntime struct {
	spec    *manifest.Function
	scaler  *autoscale.Autoscaler
	created time.Time
	// fixed, when set, pins replica counts per node and turns autoscaling
	// off (benchmarks compare policies on identical replica sets).
	fixed    map[string]int
	replicas map[string]*replicaProc
	// processing is the fleet-wide estimate per node, from gateway reports.
	processing map[string]procEstimate
	decision   autoscale.Decision
	unplaced   int
}

type procEstimate struct {
	mean  time.Duration
	count float64
}

// specFor maps a manifest's annotations onto the autoscaler's spec.
func specFor(fn *manifest.Function) (autoscale.Spec, error) {
	s := autoscale.DefaultSpec()
	a := fn.Autoscaling
	if a.TargetUtilization != nil {
		s.TargetUtilization = *a.TargetUtilization / 100
	}
	annotated := 0.0
	if a.Target != nil {
		annotated = *a.Target
	}
	s.Target = autoscale.TargetFor(annotated, fn.ContainerConcurrency, s.TargetUtilization)
	if a.Window != nil {
		s.Window = *a.Window
	}
	if a.PanicWindow != nil {
		s.PanicWindowPercentage = *a.PanicWindow
	}
	if a.PanicThreshold != nil {
		s.PanicThresholdPercentage = *a.PanicThreshold
	}
	if a.MinScale != nil {
		s.MinScale = *a.MinScale
	}
	if a.MaxScale != nil {
		s.MaxScale = *a.MaxScale
	}
	if a.InitialScale != nil {
		s.InitialScale = *a.InitialScale
	}
	if a.Retention != nil {
		s.ScaleToZeroRetention = *a.Retention
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// Apply creates or updates a function. Replicas already running keep their
// configuration; new ones get the new one.
func (f *Fleet) Apply(fn *manifest.Function) error { return f.ApplyFixed(fn, nil) }

// ApplyFixed is Apply with replicas pinned per node from the start (no
// autoscaling) when fixed is not nil.
func (f *Fleet) ApplyFixed(fn *manifest.Function, fixed map[string]int) error {
	if err := f.checkFixed(fixed); err != nil {
		return fmt.Errorf("%s: %w", fn.Key(), err)
	}
	spec, err := specFor(fn)
	if err != nil {
		return fmt.Errorf("%s: %w", fn.Key(), err)
	}
	for _, n := range fn.Nodes {
		if _, ok := f.byName[n]; !ok {
			return fmt.Errorf("%s: node affinity names node %q, which the testbed does not have (nodes: %s)",
				fn.Key(), n, strings.Join(f.nodeNames(), ", "))
		}
	}
	f.mu.Lock()
	rt, ok := f.fns[fn.Key()]
	if !ok || rt.scaler.Spec() != spec {
		created := time.Now()
		if ok {
			created = rt.created
		}
		scaler := autoscale.New(spec, created)
		if !ok {
			rt = &fnRuntime{created: created, replicas: map[string]*replicaProc{}, processing: map[string]procEstimate{}}
			f.fns[fn.Key()] = rt
		}
		rt.scaler = scaler
	}
	rt.spec = fn
	if fixed != nil {
		rt.fixed = fixed
	}
	f.mu.Unlock()
	for _, n := range f.nodes {
		n.gw.SetFunction(gateway.FunctionConfig{Namespace: fn.Namespace, Name: fn.Name,
			ContainerConcurrency: fn.ContainerConcurrency, Parallelism: fn.Workers})
	}
	f.log.Info("function applied", "function", fn.Key(), "target", spec.Target, "window", spec.Window)
	f.Kick()
	return nil
}

// SetFixed pins a function's replicas per node, turning its autoscaler off;
// nil turns autoscaling back on.
func (f *Fleet) SetFixed(key string, perNode map[string]int) error {
	if err := f.checkFixed(perNode); err != nil {
		return err
	}
	f.mu.Lock()
	rt, ok := f.fns[key]
	if ok {
		rt.fixed = perNode
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no function %q", key)
	}
	f.Kick()
	return nil
}

func (f *Fleet) checkFixed(perNode map[string]int) error {
	for n, c := range perNode {
		if _, ok := f.byName[n]; !ok {
			return fmt.Errorf("fixed replicas: unknown node %q", n)
		}
		if c < 0 {
			return fmt.Errorf("fixed replicas: node %s: negative count %d", n, c)
		}
	}
	return nil
}

// Delete removes a function and drains its replicas.
func (f *Fleet) Delete(key string) error {
	f.mu.Lock()
	rt, ok := f.fns[key]
	delete(f.fns, key)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no function %q", key)
	}
	for _, n := range f.nodes {
		n.gw.RemoveFunction(key)
	}
	for _, r := range rt.replicas {
		go r.stop(10 * time.Second)
	}
	f.log.Info("function deleted", "function", key)
	return nil
}

// Kick asks the control loop to run now.
func (f *Fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// coldStart is the gateway's immediate signal that a request waits for a
// function with no ready replica at origin: count it as demand there now,
// rather than at the next report.
func (f *Fleet) coldStart(key, origin string) {
	f.mu.Lock()
	if rt, ok := f.fns[key]; ok {
		rt.scaler.Record(origin, time.Now(), 1)
	}
	f.mu.Unlock()
	f.Kick()
}

func (f *Fleet) controlLoop() {
	t := time.NewTicker(f.opts.ControlInterval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.collect()
		case <-f.kick:
		}
		f.reconcile()
	}
}

// collect feeds the gateways' reports to the autoscalers and the fleet-wide
// processing estimates back to the gateways.
func (f *Fleet) collect() {
	now := time.Now()
	type sample struct {
		fn, origin string
		conc       float64
	}
	var samples []sample
	procs := map[string]map[string][2]float64{} // fn → node → (sum, count)
	for _, n := range f.nodes {
		for _, rep := range n.gw.Report() {
			samples = append(samples, sample{rep.Function, n.spec.Name, rep.Concurrency})
			for _, d := range rep.Dest {
				if d.Requests == 0 {
					continue
				}
				m := procs[rep.Function]
				if m == nil {
					m = map[string][2]float64{}
					procs[rep.Function] = m
				}
				v := m[d.Node]
				v[0] += float64(d.MeanService) * float64(d.Requests)
				v[1] += float64(d.Requests)
				m[d.Node] = v
			}
		}
	}
	f.mu.Lock()
	push := map[string]map[string]time.Duration{}
	for _, s := range samples {
		if rt, ok := f.fns[s.fn]; ok {
			rt.scaler.Record(s.origin, now, s.conc)
		}
	}
	for key, m := range procs {
		rt, ok := f.fns[key]
		if !ok {
			continue
		}
		out := map[string]time.Duration{}
		for nodeName, v := range m {
			mean := v[0] / v[1]
			old := rt.processing[nodeName]
			// Weight the old estimate as if it were a few seconds of
			// samples, so the figure follows change but not noise.
			w := math.Min(old.count, 3*v[1])
			est := procEstimate{mean: time.Duration((float64(old.mean)*w + mean*v[1]) / (w + v[1])), count: w + v[1]}
			rt.processing[nodeName] = est
			out[nodeName] = est.mean
		}
		push[key] = out
	}
	f.mu.Unlock()
	for key, perNode := range push {
		for _, n := range f.nodes {
			n.gw.SetProcessing(key, perNode)
		}
	}
}
