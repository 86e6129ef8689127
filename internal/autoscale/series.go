package autoscale

import "time"

// bucket holds the samples one origin reported within one second.
type bucket struct {
	sec int64 // Unix second the bucket stands for; stale when it differs
	sum float64
	n   int
}

// series is one origin's concurrency history: a ring of one-second buckets
// long enough for the stable window plus the second before it. A bucket is
// valid only while its sec tag matches, so gaps and wrap-around need no
// clearing and late samples land in their own second.
type series struct {
	ring []bucket
	// newest is the latest second with a sample; samples more than a ring
	// length older are dropped.
	newest int64
	// lastNonZero is the time of the latest sample above zero; zero when
	// the origin has never shown demand.
	lastNonZero time.Time
}

func newSeries(windowSecs int) *series {
	return &series{ring: make([]bucket, windowSecs+2), newest: minSec}
}

// minSec marks a series without samples.
const minSec = -1 << 62

func unixSec(t time.Time) int64 { return t.Unix() }

// record adds one sample. It assumes c is finite and not negative.
func (s *series) record(now time.Time, c float64) {
	sec := unixSec(now)
	if s.newest != minSec && sec <= s.newest-int64(len(s.ring)) {
		return // older than anything the windows can still see
	}
	s.newest = max(s.newest, sec)
	b := &s.ring[mod(sec, len(s.ring))]
	if b.sec != sec || b.n == 0 {
		*b = bucket{sec: sec}
	}
	b.sum += c
	b.n++
	if c > 0 && now.After(s.lastNonZero) {
		s.lastNonZero = now
	}
}

// at returns the mean of the samples taken in second sec.
func (s *series) at(sec int64) (float64, bool) {
	b := s.ring[mod(sec, len(s.ring))]
	if b.sec != sec || b.n == 0 {
		return 0, false
	}
	return b.sum / float64(b.n), true
}

// sums returns the sums of the per-second values over the last stable and
// panic buckets ending at second hi. A second without a sample takes the
// value of the second before it when that one has a sample, so a report
// that arrives late, or the current second not yet reported, does not read
// as a drop to zero; longer silences count as zero.
func (s *series) sums(hi int64, stableSecs, panicSecs int) (stableSum, panicSum float64) {
	lo := hi - int64(stableSecs) + 1
	prev, prevOK := s.at(lo - 1)
	for sec := lo; sec <= hi; sec++ {
		v, ok := s.at(sec)
		switch {
		case ok:
			prev, prevOK = v, true
		case prevOK:
			v, prevOK = prev, false
		}
		stableSum += v
		if sec > hi-int64(panicSecs) {
			panicSum += v
		}
	}
	return stableSum, panicSum
}

func mod(a int64, n int) int {
	m := int(a % int64(n))
	if m < 0 {
		m += n
	}
	return m
}
