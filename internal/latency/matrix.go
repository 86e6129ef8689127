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
	// Estimated marks an RTT that was not measured on the path but computed
	// from the two nodes' network coordinates (see Coord). Samples is then
	// 0 and Updated is when the older of the two coordinates last moved.
	Estimated bool `json:"estimated,omitempty"`
}

// Duration returns RTT as a time.Duration.
func (e Entry) Duration() time.Duration { return seconds(e.RTT) }

// Row maps a destination node to the path's entry.
type Row map[string]Entry

// Matrix maps a source node to its row: m[from][to].
type Matrix map[string]Row

// Known reports whether the entry holds an RTT: measured at least once, or
// estimated from coordinates.
func (e Entry) Known() bool { return e.Samples > 0 || e.Estimated }

// Get returns the RTT from one node to another, stale or not, measured or
// estimated, if there is one.
func (m Matrix) Get(from, to string) (time.Duration, bool) {
	e, ok := m[from][to]
	if !ok || !e.Known() {
		return 0, false
	}
	return e.Duration(), true
}

// Merge combines several views of the matrix into a new one and leaves its
// arguments untouched. For each path the entry with the latest Updated
// wins; on a tie a measured entry beats an estimated one, and otherwise the
// entry from the earlier argument is kept. The fleet merges its agents'
// views with it, and an agent merges the row a peer reports about itself
// with it.
func Merge(views ...Matrix) Matrix {
	out := Matrix{}
	for _, m := range views {
		for from, row := range m {
			cur, ok := out[from]
			if !ok {
				cur = make(Row, len(row))
				out[from] = cur
			}
			for to, e := range row {
				if old, ok := cur[to]; !ok || newer(e, old) {
					cur[to] = e
				}
			}
		}
	}
	return out
}

// newer reports whether e should replace old in a merge.
func newer(e, old Entry) bool {
	if !e.Updated.Equal(old.Updated) {
		return e.Updated.After(old.Updated)
	}
	return old.Estimated && !e.Estimated
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

// merge takes in the row that node from reported about itself, with Merge.
// The node's own row is never overwritten.
func (v *view) merge(from string, row Row) {
	if from == v.self {
		return
	}
	v.m[from] = Merge(Matrix{from: v.m[from]}, Matrix{from: row})[from]
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
