// Package oracle computes the response times an omniscient balancer would
// get on a testbed: every request goes to the node with the smallest
// expected true round-trip time plus processing time, from the testbed's
// configured values. It ignores queueing, so it is a lower bound that is
// tight at low load only.
package oracle

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"kantai.dev/kantai/internal/bench/stats"
	"kantai.dev/kantai/internal/testbed"
)

// Dist is a processing-time distribution on a node of speed 1.
type Dist interface {
	Sample(rng *rand.Rand) time.Duration
	Expected() time.Duration
}

// Input describes what the oracle may choose from.
type Input struct {
	Testbed *testbed.Testbed
	// Nodes run the function; the oracle only picks among them.
	Nodes      []string
	Processing Dist
	// PerOrigin is how many requests to sample for each origin node.
	PerOrigin map[string]int
}

// Choice is the oracle's node for one origin.
type Choice struct {
	Origin string `json:"origin"`
	Node   string `json:"node"`
	// Expected is the mean RTT plus mean processing time × node speed.
	Expected time.Duration `json:"-"`
}

// MarshalJSON writes the expected time in milliseconds, like every time in
// the benchmark's results.
func (c Choice) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Origin     string  `json:"origin"`
		Node       string  `json:"node"`
		ExpectedMs float64 `json:"expectedMs"`
	}{c.Origin, c.Node, float64(c.Expected) / float64(time.Millisecond)})
}

// Choose returns, for one origin, the node minimising the expected RTT plus
// expected processing time × speed. Ties go to the earlier node in Nodes.
func Choose(in Input, origin string) (Choice, error) {
	if _, ok := in.Testbed.Node(origin); !ok {
		return Choice{}, fmt.Errorf("oracle: unknown origin node %q", origin)
	}
	if len(in.Nodes) == 0 {
		return Choice{}, fmt.Errorf("oracle: no node runs the function")
	}
	best := Choice{Origin: origin, Expected: -1}
	for _, name := range in.Nodes {
		n, ok := in.Testbed.Node(name)
		if !ok {
			return Choice{}, fmt.Errorf("oracle: unknown node %q", name)
		}
		link, ok := in.Testbed.LinkBetween(origin, name)
		if !ok {
			return Choice{}, fmt.Errorf("oracle: no link between %q and %q", origin, name)
		}
		e := link.Latency.D() + time.Duration(float64(in.Processing.Expected())*n.Speed)
		if best.Expected < 0 || e < best.Expected {
			best.Node, best.Expected = name, e
		}
	}
	return best, nil
}

// Sample draws the oracle's response times: for each origin (in name order),
// PerOrigin[origin] requests served at the chosen node, each taking an RTT
// drawn from Normal(latency, jitter) clamped at zero (zero on the same node)
// plus a processing sample × node speed. The result is deterministic for a
// given rng state.
func Sample(in Input, rng *rand.Rand) ([]stats.Obs, []Choice, error) {
	origins := make([]string, 0, len(in.PerOrigin))
	total := 0
	for o, n := range in.PerOrigin {
		if n < 0 {
			return nil, nil, fmt.Errorf("oracle: negative sample count %d for origin %q", n, o)
		}
		origins = append(origins, o)
		total += n
	}
	slices.Sort(origins)
	obs := make([]stats.Obs, 0, total)
	choices := make([]Choice, 0, len(origins))
	for _, origin := range origins {
		c, err := Choose(in, origin)
		if err != nil {
			return nil, nil, err
		}
		choices = append(choices, c)
		node, _ := in.Testbed.Node(c.Node)
		link, _ := in.Testbed.LinkBetween(origin, c.Node)
		for range in.PerOrigin[origin] {
			var rtt time.Duration
			if origin != c.Node {
				rtt = max(0, time.Duration(rng.NormFloat64()*float64(link.Jitter)+float64(link.Latency)))
			}
			proc := time.Duration(float64(in.Processing.Sample(rng)) * node.Speed)
			obs = append(obs, stats.Obs{Origin: origin, Node: c.Node, Latency: rtt + proc, OK: true})
		}
	}
	return obs, choices, nil
}
