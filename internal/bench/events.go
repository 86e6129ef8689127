package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"kantai.dev/kantai/internal/bench/load"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/bench/stats"
)

// EventTarget is an Instance that can change its network while the load
// runs, for scenarios with events.
type EventTarget interface {
	// ApplyEvent makes the change now. The channel it returns, when not
	// nil, receives how long after the change the latency estimates of the
	// changed links settled on their new value; it may never send.
	ApplyEvent(ctx context.Context, ev scenario.Event) (<-chan time.Duration, error)
}

// PhaseResult is one stretch of the measured window between two events.
type PhaseResult struct {
	// Event is what began the phase; empty for the first.
	Event string `json:"event,omitempty"`
	// From and To are offsets in the measured window.
	From    string        `json:"from"`
	To      string        `json:"to"`
	Summary stats.Summary `json:"summary"`
	// LatencySettled is how long after the event the agents' estimates of
	// the changed links came within 25% (or 2 ms) of the new latency;
	// "not within the run" when they did not.
	LatencySettled string `json:"latencySettled,omitempty"`
	// FailuresUntil, for an event that took a node down or cut links, is
	// how long after it the last request of the phase that failed, or that
	// the node that went down served, ended: the time until routing had
	// adapted. "0s" when there was none.
	FailuresUntil string `json:"failuresUntil,omitempty"`
}

// eventRun applies a scenario's events at their times during a run.
type eventRun struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	applied []appliedEvent
}

type appliedEvent struct {
	ev      scenario.Event
	at      time.Duration // actual offset in the window
	settled <-chan time.Duration
	err     error
}

func startEvents(ctx context.Context, t EventTarget, events []scenario.Event, window time.Time) *eventRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &eventRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for _, ev := range events {
			timer := time.NewTimer(time.Until(window.Add(ev.At.D())))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			at := time.Since(window)
			settled, err := t.ApplyEvent(ctx, ev)
			r.mu.Lock()
			r.applied = append(r.applied, appliedEvent{ev: ev, at: at, settled: settled, err: err})
			r.mu.Unlock()
		}
	}()
	return r
}

// stop ends the run's events (those not yet due are dropped) and returns
// what was applied.
func (r *eventRun) stop() []appliedEvent {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied
}

// phases splits the records at the applied events.
func phases(records []load.Record, window time.Duration, applied []appliedEvent) []PhaseResult {
	bounds := []time.Duration{0}
	for _, a := range applied {
		bounds = append(bounds, min(max(a.at, 0), window))
	}
	bounds = append(bounds, window)
	out := make([]PhaseResult, 0, len(bounds)-1)
	for i := 0; i+1 < len(bounds); i++ {
		from, to := bounds[i], bounds[i+1]
		var obs []stats.Obs
		var lastBad time.Duration
		var downNode string
		var ev *appliedEvent
		if i > 0 {
			ev = &applied[i-1]
			if n := ev.ev.Node; n != nil && n.Down {
				downNode = n.Name
			}
		}
		for _, r := range records {
			if r.Start < from || (i < len(bounds)-2 && r.Start >= to) {
				continue
			}
			ok := r.OK()
			obs = append(obs, stats.Obs{Origin: r.Origin, Node: r.Node, Latency: r.Duration, OK: ok})
			if !ok || (downNode != "" && r.Node == downNode) {
				lastBad = max(lastBad, r.Start+r.Duration-from)
			}
		}
		p := PhaseResult{From: from.Round(time.Millisecond).String(), To: to.Round(time.Millisecond).String(),
			Summary: stats.Summarize(obs, to-from)}
		if ev != nil {
			p.Event = ev.ev.String()
			if ev.err != nil {
				p.Event += " (failed: " + ev.err.Error() + ")"
			}
			if ev.settled != nil {
				select {
				case d := <-ev.settled:
					p.LatencySettled = d.Round(time.Millisecond).String()
				default:
					p.LatencySettled = "not within the run"
				}
			}
			if downNode != "" || (ev.ev.Link != nil && ev.ev.Link.Cut != nil && *ev.ev.Link.Cut) {
				p.FailuresUntil = lastBad.Round(time.Millisecond).String()
			}
		}
		out = append(out, p)
	}
	return out
}

func printPhases(w io.Writer, cr *CellResult) {
	any := false
	for _, pr := range cr.Policies {
		any = any || len(pr.Phases) > 0
	}
	if !any {
		return
	}
	fmt.Fprintln(w, "   phases:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   policy\tfrom\tto\tcount\terrors\tmean\tp50\tp95\tserved\tlatency settled\tfailures until\tbegan with")
	for _, pr := range cr.Policies {
		for _, p := range pr.Phases {
			s := p.Summary
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\n", pr.Policy, p.From, p.To, s.Count, s.Errors,
				s.MeanMs, s.P50Ms, s.P95Ms, served(s.ServedBy, cr.Nodes), dash(p.LatencySettled), dash(p.FailuresUntil), dash(p.Event))
		}
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
