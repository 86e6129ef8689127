package latency

import "math"

// Estimates from coordinates alone are off wherever the real latencies
// break the triangle inequality, which Euclidean coordinates cannot: an
// edge node reaches another region over the public Internet in 80 ms while
// its region's cloud, 10 ms away, reaches the other region's cloud over a
// backbone in 15 ms. Vivaldi then settles on a compromise that is wrong
// for whole blocks of the matrix, and wrong in the same direction for
// every pair of a block. A node sees those errors on the paths it
// measured: the residual of a measured path (measured RTT minus the
// coordinates' distance) to one node of a block is a good guess for the
// residual to the other nodes of the block.
//
// So an estimate is corrected by the residuals of the node's own recent
// measurements to nodes that look like the target, weighted by a kernel
// over the "profile distance" |x_C − x_B| + |h_C − h_B| between a measured
// peer C and the target B. The profile distance bounds how much the
// coordinates' predictions of C and of B can differ, seen from any node,
// which is why it, and not the predicted RTT between C and B, measures
// likeness (two edge nodes behind long uplinks are far apart in RTT and
// alike in profile). This is local kernel regression of the residuals, the
// idea behind the "error correction" of hybrid coordinate systems; it
// needs no new messages, since a node already keeps its measured row and
// the coordinates it learnt.

// residual is one measured path from the node: the peer's coordinate, the
// measured RTT minus the coordinates' distance (seconds), and the weight
// of the measurement.
type residual struct {
	coord  Coord
	value  float64
	weight float64
}

// correction is the kernel's set-up.
type correction struct {
	// radius is the kernel's reach in profile distance, in seconds: a
	// fixed part plus a share of the estimated RTT, since the embedding's
	// error grows with the distance.
	radiusMin, radiusShare float64
	// prior is the weight of the coordinates' own estimate (residual 0),
	// so that one noisy residual moves an estimate only part of the way.
	prior float64
}

var defaultCorrection = correction{radiusMin: 0.002, radiusShare: 0.1, prior: 1}

// profileDistance is |x_a − x_b| + |h_a − h_b|: an upper bound on how much
// the distances from any third coordinate to a and to b differ.
func profileDistance(a, b Coord) float64 {
	if len(a.Vec) != len(b.Vec) {
		return math.Inf(1)
	}
	var s float64
	for i := range a.Vec {
		d := a.Vec[i] - b.Vec[i]
		s += d * d
	}
	return math.Sqrt(s) + math.Abs(a.Height-b.Height)
}

// of returns the correction, in seconds, to add to an estimate of est
// seconds to the node at target, from the residuals rs; 0 if no residual
// is near enough.
func (c correction) of(target Coord, est float64, rs []residual) float64 {
	r := c.radiusMin + c.radiusShare*est
	var sw, swv float64
	for _, x := range rs {
		u := profileDistance(x.coord, target) / r
		if u >= 1 {
			continue
		}
		k := (1 - u*u) * (1 - u*u) // biweight: smooth, and nothing beyond r
		w := k * x.weight
		sw += w
		swv += w * x.value
	}
	if sw == 0 {
		return 0
	}
	return swv / (sw + c.prior)
}
