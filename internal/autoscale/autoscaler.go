package autoscale

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Unattributed is the origin key of replicas that serve no particular
// origin: those kept by InitialScale or MinScale, and the retained last
// replica when no origin ever showed demand.
const Unattributed = ""

// Decision is the outcome of one Decide call.
type Decision struct {
	// Total is the number of replicas wanted; always the sum of PerOrigin.
	Total int
	// PerOrigin maps an origin node (where the demand enters) to the
	// replicas wanted for it. Only origins with at least one replica
	// appear; Unattributed ("") holds replicas that serve no origin.
	PerOrigin map[string]int
	// Panic reports panic mode: no origin's count goes down.
	Panic bool
	// StableConcurrency and PanicConcurrency are the observed averages over
	// the stable and panic windows, summed over origins.
	StableConcurrency, PanicConcurrency float64
	// Reason says in words what shaped the decision, e.g. "stable",
	// "panic", "stable, scale-down limited", "initial-scale".
	Reason string
}

// Autoscaler decides one function's replica counts from the concurrency
// observed at each origin. It does no I/O and reads no clock: callers pass
// the time with every call. It is not safe for concurrent use; callers that
// record and decide from different goroutines hold a lock around both.
type Autoscaler struct {
	spec    Spec
	created time.Time
	// stableSecs and panicSecs are the window lengths in one-second buckets.
	stableSecs, panicSecs int

	origins map[string]*series
	names   []string // sorted keys of origins, for deterministic order
	sorted  bool
	// firstSec is the first second with a sample from any origin; averages
	// divide by the seconds since then until a whole window has data, so a
	// new function is not diluted by seconds before it existed.
	firstSec int64
	// lastNonZero and lastOrigin tell when and where demand was last seen.
	lastNonZero time.Time
	lastOrigin  string

	// panicTime is the last time the panic condition held; zero when not
	// in panic mode.
	panicTime time.Time
	// held is the per-origin count in panic mode: it only grows.
	held map[string]int
	// prev is the previous decision's per-origin count.
	prev      map[string]int
	prevTotal int
}

// New returns the autoscaler for a function created at created. spec should
// have passed Validate; values that would break the arithmetic are replaced
// by defaults.
func New(spec Spec, created time.Time) *Autoscaler {
	spec = spec.normalized()
	stable := int((spec.Window + time.Second - 1) / time.Second)
	panicSecs := int(math.Round(float64(stable) * spec.PanicWindowPercentage / 100))
	return &Autoscaler{
		spec:       spec,
		created:    created,
		stableSecs: stable,
		panicSecs:  min(max(panicSecs, 1), stable),
		origins:    map[string]*series{},
		firstSec:   minSec,
		prev:       map[string]int{},
	}
}

// Spec returns the settings in use, after defaults were filled in.
func (a *Autoscaler) Spec() Spec { return a.spec }

// Record adds one observation: concurrency is the average number of
// requests in flight that entered at origin, over about the second before
// now. Callers report each origin about once per second. Several samples in
// the same second are averaged; a sample may arrive late, out of order, as
// long as it is within the stable window; a second with no sample takes the
// value of the second before it, and longer silences count as zero demand.
// Negative values count as zero; NaN and infinities are ignored.
func (a *Autoscaler) Record(origin string, now time.Time, concurrency float64) {
	if math.IsNaN(concurrency) || math.IsInf(concurrency, 0) {
		return
	}
	concurrency = max(concurrency, 0)
	s, ok := a.origins[origin]
	if !ok {
		s = newSeries(a.stableSecs)
		a.origins[origin] = s
		a.names = append(a.names, origin)
		a.sorted = false
	}
	s.record(now, concurrency)
	if sec := unixSec(now); a.firstSec == minSec || sec < a.firstSec {
		a.firstSec = sec
	}
	if concurrency > 0 && !now.Before(a.lastNonZero) {
		a.lastNonZero, a.lastOrigin = now, origin
	}
}

// originDemand is one origin's share of a decision.
type originDemand struct {
	name            string
	stable, panic   float64 // window averages
	stableN, panicN int     // replicas the averages ask for
}

// Decide returns the replicas wanted at now, given ready, the number of
// ready replicas of the function (all origins). See the package
// documentation for the rule. Decide updates the panic state and remembers
// the decision, so call it once per tick.
func (a *Autoscaler) Decide(now time.Time, ready int) Decision {
	s := a.spec
	window := time.Duration(a.stableSecs) * time.Second
	demand := a.observe(now)

	// Panic mode, as KPA: the panic average asks for PanicThreshold times
	// the ready replicas or more. It lasts until a stable window has passed
	// since the condition last held.
	readyF := float64(max(ready, 1))
	var panicWant, stableWant int
	var stableSum, panicSum float64
	for _, d := range demand {
		panicWant += d.panicN
		stableWant += d.stableN
		stableSum += d.stable
		panicSum += d.panic
	}
	over := float64(panicWant)/readyF >= s.PanicThresholdPercentage/100
	switch {
	case over:
		if a.panicTime.IsZero() {
			// Entering panic: start from the previous decision so that no
			// origin loses a replica while panicking.
			a.held = make(map[string]int, len(a.prev))
			for o, n := range a.prev {
				if o != Unattributed {
					a.held[o] = n
				}
			}
		}
		a.panicTime = now
	case !a.panicTime.IsZero() && !now.Before(a.panicTime.Add(window)):
		a.panicTime, a.held = time.Time{}, nil
	}
	panicking := !a.panicTime.IsZero()

	counts := make(map[string]int, len(demand)+1)
	weight := make(map[string]float64, len(demand))
	var tags []string
	if panicking {
		tags = append(tags, "panic")
		for _, d := range demand {
			a.held[d.name] = max(a.held[d.name], d.panicN)
			weight[d.name] = d.panic
		}
		for o, n := range a.held {
			counts[o] = n
		}
	} else {
		tags = append(tags, "stable")
		for _, d := range demand {
			counts[d.name] = d.stableN
			weight[d.name] = d.stable
		}
	}

	// Rate limits relative to the ready replicas, as KPA.
	maxUp := int(math.Ceil(s.MaxScaleUpRate * readyF))
	maxDown := int(math.Floor(readyF / s.MaxScaleDownRate))
	switch total := sum(counts); {
	case total > maxUp:
		trim(counts, weight, total-maxUp)
		tags = append(tags, "scale-up limited")
	case total < maxDown:
		restore(counts, a.prev, weight, maxDown-total)
		tags = append(tags, "scale-down limited")
	}

	// Scale to zero is due one window after the last demand (or after
	// creation when there was none). The last replica then stays for
	// ScaleToZeroRetention more.
	if sum(counts) == 0 && (a.prevTotal > 0 || ready > 0) {
		due := a.created
		if a.lastNonZero.After(due) {
			due = a.lastNonZero
		}
		if due = due.Add(window); !now.Before(due) && now.Before(due.Add(s.ScaleToZeroRetention)) {
			counts[a.lastOrigin] = 1
			tags = append(tags, "scale-to-zero retention")
		}
	}

	if now.Before(a.created.Add(window)) {
		if total := sum(counts); total < s.InitialScale {
			counts[Unattributed] += s.InitialScale - total
			tags = append(tags, "initial-scale")
		}
	}
	if total := sum(counts); total < s.MinScale {
		counts[Unattributed] += s.MinScale - total
		tags = append(tags, "min-scale")
	}
	if total := sum(counts); s.MaxScale > 0 && total > s.MaxScale {
		trim(counts, weight, total-s.MaxScale)
		tags = append(tags, "max-scale")
	}

	per := make(map[string]int, len(counts))
	prev := make(map[string]int, len(counts))
	for o, n := range counts {
		if n > 0 {
			per[o], prev[o] = n, n
		}
	}
	total := sum(per)
	a.prev, a.prevTotal = prev, total
	return Decision{
		Total:             total,
		PerOrigin:         per,
		Panic:             panicking,
		StableConcurrency: stableSum,
		PanicConcurrency:  panicSum,
		Reason:            strings.Join(tags, ", "),
	}
}

// observe computes every origin's window averages and wanted counts at now,
// in name order, and forgets origins that have been silent for longer than
// the ring remembers and hold no replicas.
func (a *Autoscaler) observe(now time.Time) []originDemand {
	if !a.sorted {
		slices.Sort(a.names)
		a.sorted = true
	}
	nowSec := unixSec(now)
	var stableDiv, panicDiv float64
	if a.firstSec != minSec && nowSec >= a.firstSec {
		seen := nowSec - a.firstSec + 1
		stableDiv = float64(min(int64(a.stableSecs), seen))
		panicDiv = float64(min(int64(a.panicSecs), seen))
	}
	window := time.Duration(a.stableSecs) * time.Second
	out := make([]originDemand, 0, len(a.names))
	keep := a.names[:0]
	for _, name := range a.names {
		s := a.origins[name]
		if s.newest < nowSec-int64(len(s.ring)) && a.prev[name] == 0 && a.held[name] == 0 {
			delete(a.origins, name)
			continue
		}
		keep = append(keep, name)
		d := originDemand{name: name}
		if stableDiv > 0 && s.newest >= nowSec-int64(a.stableSecs) {
			ss, ps := s.sums(nowSec, a.stableSecs, a.panicSecs)
			d.stable, d.panic = ss/stableDiv, ps/panicDiv
		}
		// Demand seen within the last window keeps at least one replica;
		// once a whole window has passed without it the origin wants none,
		// whatever the one-second buckets round to.
		if !s.lastNonZero.IsZero() && now.Sub(s.lastNonZero) < window {
			d.stableN = max(replicas(d.stable, a.spec.Target), 1)
			d.panicN = replicas(d.panic, a.spec.Target)
		}
		out = append(out, d)
	}
	clear(a.names[len(keep):])
	a.names = keep
	return out
}

// replicas is ceil(concurrency/target), forgiving rounding noise.
func replicas(concurrency, target float64) int {
	return int(math.Ceil(concurrency/target - 1e-9))
}

func sum(m map[string]int) int {
	t := 0
	for _, n := range m {
		t += n
	}
	return t
}

// byDemand returns the origins of counts ordered by weight, least first,
// then by name.
func byDemand(counts map[string]int, weight map[string]float64) []string {
	names := make([]string, 0, len(counts))
	for o := range counts {
		names = append(names, o)
	}
	slices.SortFunc(names, func(x, y string) int {
		if wx, wy := weight[x], weight[y]; wx != wy {
			if wx < wy {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	})
	return names
}

// trim takes n replicas away, from the origins with the least demand first.
func trim(counts map[string]int, weight map[string]float64, n int) {
	for _, o := range byDemand(counts, weight) {
		if n == 0 {
			return
		}
		take := min(counts[o], n)
		counts[o] -= take
		n -= take
	}
}

// restore gives back n replicas that the previous decision had, to the
// origins with the most demand first; what the previous decision cannot
// account for goes to Unattributed.
func restore(counts, prev map[string]int, weight map[string]float64, n int) {
	for o := range prev {
		if _, ok := counts[o]; !ok {
			counts[o] = 0
		}
	}
	order := byDemand(counts, weight)
	for i := len(order) - 1; i >= 0 && n > 0; i-- {
		o := order[i]
		give := min(max(prev[o]-counts[o], 0), n)
		counts[o] += give
		n -= give
	}
	counts[Unattributed] += n
}
