package balance

import "math/rand/v2"

// LocalFirst is Kubernetes' topology-aware routing: while the gateway's node
// has any ready replica, requests stay there (waiting if those are full);
// otherwise they go round-robin to all replicas.
type LocalFirst struct{ rr RoundRobin }

func init() { Register("local-first", func(*rand.Rand) Policy { return &LocalFirst{} }) }

var _ Policy = (*LocalFirst)(nil)

func (p *LocalFirst) Pick(v *View) int {
	n := len(v.Replicas)
	local := false
	for i := range v.Replicas {
		if v.Replicas[i].Node == v.Origin {
			local = true
			break
		}
	}
	if !local {
		return p.rr.Pick(v)
	}
	for i := 0; i < n; i++ {
		j := (p.rr.next + i) % n
		if r := &v.Replicas[j]; r.Node == v.Origin && !r.Full() {
			p.rr.next = j + 1
			return j
		}
	}
	return -1
}
