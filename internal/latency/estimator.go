package latency

import (
	"fmt"
	"math"
	"time"
)

// DefaultAlpha is the weight of a new sample once an estimate is warm: 1/8,
// TCP's gain for SRTT (RFC 6298), so an estimate forgets a sample with a
// time constant of about eight probes (eight seconds at the default
// interval) — quick enough to follow a changed link, slow enough that one
// delayed probe moves it little.
const DefaultAlpha = 0.125

// MaxRTT bounds a plausible sample; longer ones are rejected as errors.
const MaxRTT = 10 * time.Second

// Estimate is the smoothed view of one path.
type Estimate struct {
	// RTT is the smoothed mean round-trip time.
	RTT time.Duration
	// Jitter is the smoothed standard deviation of the round-trip time,
	// the same quantity the testbed calls a link's jitter.
	Jitter time.Duration
	// Samples counts the samples taken in.
	Samples int
}

// Estimator keeps a smoothed RTT and jitter per peer. It has no clock: the
// caller measures and passes in samples. It is not safe for concurrent use.
//
// Each path keeps an exponentially weighted moving mean and variance (the
// incremental form in Finch, "Incremental calculation of weighted mean and
// variance", 2009):
//
//	d = x − mean;  mean += a·d;  var = (1 − a)·(var + a·d²)
//
// rather than TCP's SRTT/RTTVAR, because RTTVAR smooths the mean absolute
// deviation, which for normal jitter is only √(2/π) ≈ 0.8 of the standard
// deviation that the testbed's links are described with. The gain is
// a = max(Alpha, 1/n) for the n-th sample: the first sample initialises the
// mean (variance 0), and until 1/Alpha samples have been seen the estimate
// is the exact mean and population variance of all samples (Welford's
// update), so a new path is not dominated by its first sample; after that,
// it is the exponentially weighted one.
type Estimator struct {
	alpha float64
	paths map[string]*path
}

type path struct {
	n          int
	mean, vari float64 // seconds, seconds²
}

// NewEstimator returns an estimator with gain alpha in (0, 1]; 0 means
// DefaultAlpha.
func NewEstimator(alpha float64) *Estimator {
	if alpha <= 0 || alpha > 1 || math.IsNaN(alpha) {
		alpha = DefaultAlpha
	}
	return &Estimator{alpha: alpha, paths: map[string]*path{}}
}

// Observe takes in one round-trip sample to peer and returns the updated
// estimate. Negative samples and samples above MaxRTT are rejected.
func (e *Estimator) Observe(peer string, rtt time.Duration) (Estimate, error) {
	if rtt < 0 || rtt > MaxRTT {
		return Estimate{}, fmt.Errorf("rtt sample to %q out of range [0, %v]: %v", peer, MaxRTT, rtt)
	}
	p := e.paths[peer]
	if p == nil {
		p = &path{}
		e.paths[peer] = p
	}
	p.n++
	x := rtt.Seconds()
	a := max(e.alpha, 1/float64(p.n))
	d := x - p.mean
	p.mean += a * d
	p.vari = (1 - a) * (p.vari + a*d*d)
	return p.estimate(), nil
}

// Estimate returns the current estimate for peer, if it has any sample.
func (e *Estimator) Estimate(peer string) (Estimate, bool) {
	p, ok := e.paths[peer]
	if !ok {
		return Estimate{}, false
	}
	return p.estimate(), true
}

func (p *path) estimate() Estimate {
	return Estimate{
		RTT:     seconds(p.mean),
		Jitter:  seconds(math.Sqrt(max(p.vari, 0))),
		Samples: p.n,
	}
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// Forget drops everything known about peer.
func (e *Estimator) Forget(peer string) { delete(e.paths, peer) }
