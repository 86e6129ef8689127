package fleetenv

import (
	"context"
	"time"

	"kantai.dev/kantai/internal/bench"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/fleet"
)

var _ bench.EventTarget = (*instance)(nil)

// settlePoll is how often the agents' matrix is read after a latency change.
const settlePoll = 50 * time.Millisecond

// ApplyEvent implements bench.EventTarget with the fleet's live changes. For
// a latency change or a reset it watches the agents' matrix until every
// changed link reads within 25% (or 2 ms) of its new latency, both ways.
func (i *instance) ApplyEvent(ctx context.Context, ev scenario.Event) (<-chan time.Duration, error) {
	start := time.Now()
	if n := ev.Node; n != nil {
		return nil, i.f.SetNodeDown(n.Name, n.Down)
	}
	l := ev.Link
	var (
		links []fleet.LinkStatus
		err   error
	)
	if l.Reset {
		links, err = i.f.ResetLinks(l.A, l.B)
	} else {
		links, err = i.f.SetLinks(l.A, l.B, fleet.LinkChange{Latency: l.Latency, Jitter: l.Jitter, Bandwidth: l.Bandwidth, Cut: l.Cut})
	}
	if err != nil || (l.Latency == nil && !l.Reset) || (l.Cut != nil && *l.Cut) {
		return nil, err
	}
	settled := make(chan time.Duration, 1)
	go func() {
		t := time.NewTicker(settlePoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-i.f.Done():
				return
			case <-t.C:
			}
			m := i.f.Latency()
			ok := true
			for _, s := range links {
				want := s.Latency.D()
				tol := max(want/4, 2*time.Millisecond)
				for _, p := range [][2]string{{s.A, s.B}, {s.B, s.A}} {
					got, known := m.Get(p[0], p[1])
					ok = ok && known && (got-want).Abs() <= tol
				}
			}
			if ok {
				settled <- time.Since(start)
				return
			}
		}
	}()
	return settled, nil
}
