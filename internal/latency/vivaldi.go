package latency

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Coord is a node's network coordinate in the Vivaldi system [1]: a point
// in a Euclidean space plus a height, both in seconds. The RTT between two
// nodes is estimated as the distance between their points plus both
// heights; the height models the access link every packet of a node
// crosses before it reaches the core (§5.4 of [1]), which is what edge
// nodes behind a slow uplink look like.
//
// [1] F. Dabek, R. Cox, F. Kaashoek, R. Morris: Vivaldi: A Decentralized
// Network Coordinate System. SIGCOMM 2004.
// https://pdos.csail.mit.edu/papers/vivaldi:sigcomm/paper.pdf
//
// The update rule, the height force and the default constants follow [1]
// and the choices of hashicorp/serf's coordinate package (MPL-2.0), which
// has run the algorithm on large fleets; this is an independent, smaller
// implementation, with serf's adjustment term (see adjuster) and without
// its gravity.
type Coord struct {
	// Vec is the point; its length is the coordinate space's dimension.
	Vec Vector `json:"vec"`
	// Height is the access-link term, in seconds.
	Height float64 `json:"height"`
	// Error is the node's confidence in its coordinate: an estimate of
	// the relative error of the distances it predicts, from 0 (certain)
	// to the configured maximum (a node that has not measured yet).
	Error float64 `json:"error"`
	// Adjustment, in seconds, is added to every distance the coordinate
	// predicts, as both heights are, but may be negative: half the mean
	// of the node's recent residuals (measured RTT minus the distance),
	// which corrects what the space cannot fit (see adjuster).
	Adjustment float64 `json:"adjustment,omitempty"`
}

// Vector is a coordinate's point, in seconds. It is written to JSON with
// five significant digits (a hundredth of a per cent of the value), which
// is far below the coordinates' own error and halves the size of a /ping
// answer that carries a dozen coordinates.
type Vector []float64

// MarshalJSON implements json.Marshaler.
func (v Vector) MarshalJSON() ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+10*len(v))
	b = append(b, '[')
	for i, x := range v {
		if !finite(x) {
			return nil, fmt.Errorf("coordinate component %d is %v", i, x)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, x, 'g', 5, 64)
	}
	return append(b, ']'), nil
}

// VivaldiConfig holds the algorithm's constants. The zero value of a field
// means its default, so VivaldiConfig{} is a sound configuration.
type VivaldiConfig struct {
	// Dims is the dimension of the space; default 8, as serf: fewer
	// dimensions fit Internet-like latencies measurably worse, more
	// cost memory and bytes on the wire for little gain.
	Dims int
	// Ce weighs a new sample in the error estimate; default 0.25 ([1]
	// §3.3 finds 0.25 for both constants to converge fast and stably).
	Ce float64
	// Cc scales the adaptive timestep; default 0.25.
	Cc float64
	// ErrorMax is the error of a new coordinate and the cap; default 1.5.
	ErrorMax float64
	// HeightMin is the smallest height in seconds; default 10 µs, so that
	// a height never collapses to zero and stops moving.
	HeightMin float64
}

const zeroThreshold = 1e-6

func (c VivaldiConfig) withDefaults() VivaldiConfig {
	if c.Dims <= 0 {
		c.Dims = 8
	}
	if c.Ce <= 0 {
		c.Ce = 0.25
	}
	if c.Cc <= 0 {
		c.Cc = 0.25
	}
	if c.ErrorMax <= 0 {
		c.ErrorMax = 1.5
	}
	if c.HeightMin <= 0 {
		c.HeightMin = 10e-6
	}
	return c
}

// NewCoord returns the coordinate of a node that has measured nothing: the
// origin, the minimum height and the maximum error.
func (c VivaldiConfig) NewCoord() Coord {
	c = c.withDefaults()
	return Coord{Vec: make([]float64, c.Dims), Height: c.HeightMin, Error: c.ErrorMax}
}

// Valid reports whether the coordinate has the configured dimension and
// only finite numbers; a peer's coordinate that is not valid is ignored.
func (c VivaldiConfig) Valid(x Coord) bool {
	c = c.withDefaults()
	if len(x.Vec) != c.Dims || !finite(x.Height) || !finite(x.Error) || !finite(x.Adjustment) || x.Height < 0 || x.Error < 0 {
		return false
	}
	for _, v := range x.Vec {
		if !finite(v) {
			return false
		}
	}
	return true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Distance returns the RTT the two coordinates predict: the distance
// between the points, both heights and, if the sum stays positive, both
// adjustments. Coordinates of different dimensions predict nothing: the
// result is then 0 and false.
func (c Coord) Distance(o Coord) (time.Duration, bool) {
	if len(c.Vec) != len(o.Vec) {
		return 0, false
	}
	return seconds(c.adjusted(o)), true
}

// adjusted is the distance with both adjustments, when that is positive.
func (c Coord) adjusted(o Coord) float64 {
	d := c.distance(o)
	if a := d + c.Adjustment + o.Adjustment; a > 0 {
		return a
	}
	return d
}

func (c Coord) distance(o Coord) float64 {
	var s float64
	for i := range c.Vec {
		d := c.Vec[i] - o.Vec[i]
		s += d * d
	}
	return math.Sqrt(s) + c.Height + o.Height
}

// Update returns local's new coordinate after it measured rtt to a node at
// remote (Fig. 3 of [1], with the adaptive timestep and height vectors).
// It is pure: local is not changed, and rng is used only to pick a
// direction when the two points coincide. Coordinates of another dimension
// or an RTT that is not positive leave local as it is.
func (c VivaldiConfig) Update(local, remote Coord, rtt time.Duration, rng *rand.Rand) Coord {
	c = c.withDefaults()
	if !c.Valid(local) || !c.Valid(remote) || rtt <= 0 {
		return local
	}
	r := rtt.Seconds()
	dist := local.distance(remote)
	total := max(local.Error+remote.Error, zeroThreshold)
	w := local.Error / total // how much this sample counts for local
	wrong := math.Abs(dist-r) / r
	out := Coord{
		Vec:        make([]float64, len(local.Vec)),
		Height:     local.Height,
		Error:      min(c.Ce*w*wrong+local.Error*(1-c.Ce*w), c.ErrorMax),
		Adjustment: local.Adjustment,
	}
	force := c.Cc * w * (r - dist) // > 0 pushes local away from remote
	unit, mag := unitFrom(local.Vec, remote.Vec, rng)
	for i := range out.Vec {
		out.Vec[i] = local.Vec[i] + unit[i]*force
	}
	if mag > zeroThreshold {
		out.Height = max((local.Height+remote.Height)*force/mag+local.Height, c.HeightMin)
	}
	return out
}

// unitFrom returns the unit vector pointing from b to a and the distance;
// for points that coincide, a random direction and 0.
func unitFrom(a, b []float64, rng *rand.Rand) ([]float64, float64) {
	u := make([]float64, len(a))
	var mag float64
	for i := range a {
		u[i] = a[i] - b[i]
		mag += u[i] * u[i]
	}
	mag = math.Sqrt(mag)
	if mag > zeroThreshold {
		for i := range u {
			u[i] /= mag
		}
		return u, mag
	}
	for {
		var s float64
		for i := range u {
			u[i] = rng.Float64() - 0.5
			s += u[i] * u[i]
		}
		if s = math.Sqrt(s); s > zeroThreshold {
			for i := range u {
				u[i] /= s
			}
			return u, 0
		}
	}
}

// adjustmentWindow is how many recent residuals an adjustment averages,
// as serf's default.
const adjustmentWindow = 20

// adjuster keeps a node's recent residuals, the measured RTT minus the
// distance between the points and heights (without adjustments), and
// turns them into the node's adjustment: half their mean, since the two
// ends of a path each add theirs. The idea is the adjustment term of
// hashicorp/serf's coordinate package (after Ledlie, Gardner, Seltzer:
// Network Coordinates in the Wild, NSDI 2007): a node that all its paths
// find farther than the space can place it gets a positive term, one
// that they find nearer a negative one.
type adjuster struct {
	samples []float64
	next    int
}

// add takes in a residual in seconds and returns the new adjustment.
func (a *adjuster) add(residual float64) float64 {
	if !finite(residual) {
		return a.value()
	}
	if len(a.samples) < adjustmentWindow {
		a.samples = append(a.samples, residual)
	} else {
		a.samples[a.next] = residual
		a.next = (a.next + 1) % len(a.samples)
	}
	return a.value()
}

func (a *adjuster) value() float64 {
	if len(a.samples) == 0 {
		return 0
	}
	var sum float64
	for _, r := range a.samples {
		sum += r
	}
	return sum / float64(2*len(a.samples))
}
