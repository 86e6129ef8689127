package balance

import "math/rand/v2"

// PowerOfTwo is what Knative's activator does: take two replicas at random
// and send to the one with fewer requests in flight. Distance plays no part.
type PowerOfTwo struct{ rng *rand.Rand }

func init() { Register("knative", func(rng *rand.Rand) Policy { return &PowerOfTwo{rng: rng} }) }

var _ Policy = (*PowerOfTwo)(nil)

func (p *PowerOfTwo) Pick(v *View) int {
	n := len(v.Replicas)
	switch n {
	case 0:
		return -1
	case 1:
		if v.Replicas[0].Full() {
			return -1
		}
		return 0
	}
	a := p.rng.IntN(n)
	b := p.rng.IntN(n - 1)
	if b >= a {
		b++
	}
	ra, rb := &v.Replicas[a], &v.Replicas[b]
	switch {
	case ra.Full() && rb.Full():
		// Both sampled replicas are full; look for any with room rather
		// than queueing while capacity exists.
		best := -1
		for i := range v.Replicas {
			if r := &v.Replicas[i]; !r.Full() && (best < 0 || r.InFlight < v.Replicas[best].InFlight) {
				best = i
			}
		}
		return best
	case ra.Full():
		return b
	case rb.Full():
		return a
	case rb.InFlight < ra.InFlight:
		return b
	}
	return a
}
