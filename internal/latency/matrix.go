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
// wins; on a tie a measured entry beats an estimated one, then the entry
// with more samples (an agent's own entry, which pools both ends'
// measurements, over the one end's it reported), and otherwise the
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
	if e.Estimated != old.Estimated {
		return old.Estimated
	}
	return e.Samples > old.Samples
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
