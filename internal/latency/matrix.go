package latency

import (
	"time"
)

// Entry is what a node knows about the path to one peer.
type Entry struct {
	// RTT is the smoothed round-trip time in seconds.
	RTT float64 `json:"rtt"`
	// Jitter is the smoothed standard deviation of the RTT in seconds.
	Jitter float64 `json:"jitter"`
	// Samples counts successful probes.
	Samples int `json:"samples"`
	// Failures counts consecutive failed probes; a success resets it.
	Failures int `json:"failures,omitempty"`
	// Updated is when the measuring node last probed the path, successfully
	// or not.
	Updated time.Time `json:"updated"`
	// Stale marks a value that may no longer hold: the last probe failed,
	// or nothing has been heard about the path for a while. RTT and Jitter
	// keep the last good values.
	Stale bool `json:"stale,omitempty"`
}

// Duration returns RTT as a time.Duration.
func (e Entry) Duration() time.Duration { return seconds(e.RTT) }

// Row maps a destination node to the path's entry.
type Row map[string]Entry

// Matrix maps a source node to its row: m[from][to].
type Matrix map[string]Row

// Get returns the smoothed RTT from one node to another, stale or not, if
// it has been measured.
func (m Matrix) Get(from, to string) (time.Duration, bool) {
	e, ok := m[from][to]
	if !ok || e.Samples == 0 {
		return 0, false
	}
	return e.Duration(), true
}

func (m Matrix) clone() Matrix {
	out := make(Matrix, len(m))
	for from, row := range m {
		out[from] = row.clone()
	}
	return out
}

func (r Row) clone() Row {
	out := make(Row, len(r))
	for to, e := range r {
		out[to] = e
	}
	return out
}

// view is one node's knowledge of the matrix: its own row, measured, and
// the rows peers reported. It is pure: time comes in as arguments.
type view struct {
	self string
	est  *Estimator
	m    Matrix
}

func newView(self string, alpha float64) *view {
	return &view{self: self, est: NewEstimator(alpha), m: Matrix{self: Row{}}}
}

// observe records a successful probe to peer.
func (v *view) observe(peer string, rtt time.Duration, now time.Time) error {
	est, err := v.est.Observe(peer, rtt)
	if err != nil {
		return err
	}
	v.m[v.self][peer] = Entry{
		RTT:     est.RTT.Seconds(),
		Jitter:  est.Jitter.Seconds(),
		Samples: est.Samples,
		Updated: now,
	}
	return nil
}

// fail records a failed probe to peer, keeping the last good values.
func (v *view) fail(peer string, now time.Time) {
	e := v.m[v.self][peer]
	e.Failures++
	e.Stale = true
	e.Updated = now
	v.m[v.self][peer] = e
}

// merge takes in the row that node from reported about itself. For each
// path the newer entry wins; the node's own row is never overwritten.
func (v *view) merge(from string, row Row) {
	if from == v.self {
		return
	}
	mine := v.m[from]
	if mine == nil {
		mine = Row{}
		v.m[from] = mine
	}
	for to, e := range row {
		if old, ok := mine[to]; !ok || e.Updated.After(old.Updated) {
			mine[to] = e
		}
	}
}

// snapshot returns a copy of the view in which every entry not updated
// within staleAfter of now is marked stale.
func (v *view) snapshot(now time.Time, staleAfter time.Duration) Matrix {
	out := v.m.clone()
	for _, row := range out {
		markStale(row, now, staleAfter)
	}
	return out
}

// row returns a copy of the node's own row, staleness applied.
func (v *view) row(now time.Time, staleAfter time.Duration) Row {
	out := v.m[v.self].clone()
	markStale(out, now, staleAfter)
	return out
}

func markStale(r Row, now time.Time, staleAfter time.Duration) {
	for to, e := range r {
		if now.Sub(e.Updated) > staleAfter {
			e.Stale = true
			r[to] = e
		}
	}
}
