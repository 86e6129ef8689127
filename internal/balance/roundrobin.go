package balance

import "math/rand/v2"

// RoundRobin cycles through the replicas that have room, ignoring where
// they are.
type RoundRobin struct{ next int }

func init() { Register("round-robin", func(*rand.Rand) Policy { return &RoundRobin{} }) }

var _ Policy = (*RoundRobin)(nil)

func (p *RoundRobin) Pick(v *View) int {
	n := len(v.Replicas)
	for i := 0; i < n; i++ {
		j := (p.next + i) % n
		if !v.Replicas[j].Full() {
			p.next = j + 1
			return j
		}
	}
	return -1
}
