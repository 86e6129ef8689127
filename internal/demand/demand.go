// Package demand turns the cumulative counters of the node gateways into
// the control step's input: per revision, the demand per origin node and
// the service times per node since that revision's previous step. Both
// homes feed it: the local fleet with the Stats of its in-process
// gateways, the Kubernetes controller with the Stats it polls from the
// gateway DaemonSet.
//
// A Collector keeps the last reading of every node and, per revision, the
// reading each node had when that revision last took its windows. Taking
// consumes exactly what happened since, so readings that no step took are
// folded into the next window, a second take without a new reading gets
// nothing, and a gateway that restarted (its Stats.Epoch changed) counts
// from its restart (see gateway.Stats.Since). It does no I/O and reads no
// clock: time is the gateways' own, carried in their Stats.
package demand

import (
	"slices"
	"time"

	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/gateway"
)

// Windows is one revision's control-step input from the gateways.
type Windows struct {
	// Demand has one entry per node that reported the revision in a new
	// reading: the mean concurrency of the requests that entered there.
	Demand []control.Demand
	// Service has one entry per (reporting gateway, serving node) with
	// responses in the window.
	Service []control.Service
	// Waiting counts the requests waiting at the gateways in their latest
	// readings (a gauge, not consumed by taking).
	Waiting int
}

// Active says the windows show traffic: a waiting request or demand.
func (w Windows) Active() bool {
	if w.Waiting > 0 {
		return true
	}
	for _, d := range w.Demand {
		if d.Concurrency > 0 {
			return true
		}
	}
	return false
}

// Collector holds the readings. It is not safe for concurrent use.
type Collector struct {
	// FirstReadingIsBase makes a node's first reading a baseline rather
	// than a window: a reader that starts late (a controller that just
	// became leader) does not count the gateway's whole history as one
	// window. Revisions that appear in later readings still count from
	// when the gateway began counting them.
	FirstReadingIsBase bool

	order  []string // nodes in order of first reading
	latest map[string]*reading
	prev   map[string]*reading // the reading before latest
	// base is, per revision and node, the reading its last take consumed.
	base map[string]map[string]mark
}

type reading struct {
	epoch uint64
	at    time.Time
	revs  map[string]*gateway.RevisionStats
	stats gateway.Stats
}

type mark struct {
	epoch uint64
	at    time.Time
	rs    gateway.RevisionStats
}

// New returns an empty Collector.
func New() *Collector {
	return &Collector{latest: map[string]*reading{}, prev: map[string]*reading{}, base: map[string]map[string]mark{}}
}

// Observe records a node's reading, replacing the previous one. A reading
// older than the one held (an answer that arrived late) is ignored.
func (c *Collector) Observe(node string, st gateway.Stats) {
	old, seen := c.latest[node]
	if seen && old.epoch == st.Epoch && st.At.Before(old.at) {
		return
	}
	r := &reading{epoch: st.Epoch, at: st.At, revs: make(map[string]*gateway.RevisionStats, len(st.Revisions)), stats: st}
	for i := range st.Revisions {
		r.revs[st.Revisions[i].Revision] = &st.Revisions[i]
	}
	if !seen {
		c.order = append(c.order, node)
		if c.FirstReadingIsBase {
			for rev, rs := range r.revs {
				c.setBase(rev, node, mark{epoch: r.epoch, at: r.at, rs: *rs})
			}
		}
	}
	if seen {
		c.prev[node] = old
	}
	c.latest[node] = r
}

// Forget drops a node that is gone, with its share of every revision's
// baseline.
func (c *Collector) Forget(node string) {
	if _, ok := c.latest[node]; !ok {
		return
	}
	delete(c.latest, node)
	delete(c.prev, node)
	c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == node })
	for rev, m := range c.base {
		delete(m, node)
		if len(m) == 0 {
			delete(c.base, rev)
		}
	}
}

// Nodes lists the nodes with a reading, in order of first reading.
func (c *Collector) Nodes() []string { return slices.Clone(c.order) }

// Latest is a node's latest reading.
func (c *Collector) Latest(node string) (gateway.Stats, bool) {
	r, ok := c.latest[node]
	if !ok {
		return gateway.Stats{}, false
	}
	return r.stats, true
}

// Revisions lists the revisions in any node's latest reading, sorted.
func (c *Collector) Revisions() []string {
	var out []string
	for _, r := range c.latest {
		for rev := range r.revs {
			out = append(out, rev)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Take returns the revision's windows since its previous take and marks
// them consumed.
func (c *Collector) Take(revision string) Windows { return c.windows(revision, true) }

// Peek returns what Take would, consuming nothing.
func (c *Collector) Peek(revision string) Windows { return c.windows(revision, false) }

// Recent returns the revision's windows between each node's last two
// readings (what the latest reading added), consuming nothing: whether a
// revision has demand now, whatever steps took. A node's first reading
// counts from the revision's start, unless FirstReadingIsBase.
func (c *Collector) Recent(revision string) Windows {
	var w Windows
	for _, node := range c.order {
		r := c.latest[node]
		cur, ok := r.revs[revision]
		if !ok {
			continue
		}
		w.Waiting += cur.Waiting
		prev := gateway.Stats{}
		if p := c.prev[node]; p != nil {
			prev = gateway.Stats{Epoch: p.epoch, At: p.at}
			if rs, ok := p.revs[revision]; ok {
				prev.Revisions = []gateway.RevisionStats{*rs}
			}
		} else if c.FirstReadingIsBase {
			continue
		}
		now := gateway.Stats{Node: node, Epoch: r.epoch, At: r.at, Revisions: []gateway.RevisionStats{*cur}}
		c.appendWindows(&w, node, now.Since(prev))
	}
	return w
}

func (c *Collector) appendWindows(w *Windows, node string, wins []gateway.Window) {
	for _, win := range wins {
		w.Demand = append(w.Demand, control.Demand{Origin: node, Concurrency: win.Concurrency})
		for _, d := range win.Dest {
			if d.Responses > 0 {
				w.Service = append(w.Service, control.Service{Node: d.Node, Responses: float64(d.Responses), Mean: d.MeanService})
			}
		}
	}
}

// TakeAll takes the windows of every revision in the latest readings.
func (c *Collector) TakeAll() map[string]Windows {
	out := map[string]Windows{}
	for _, rev := range c.Revisions() {
		out[rev] = c.Take(rev)
	}
	c.Prune()
	return out
}

func (c *Collector) windows(revision string, consume bool) Windows {
	var w Windows
	base := c.base[revision]
	for _, node := range c.order {
		r := c.latest[node]
		cur, ok := r.revs[revision]
		if !ok {
			if consume && base != nil {
				// The gateway dropped the revision: should it come back,
				// it counts from its new start.
				delete(base, node)
			}
			continue
		}
		w.Waiting += cur.Waiting
		prev := gateway.Stats{}
		if b, ok := base[node]; ok {
			prev = gateway.Stats{Epoch: b.epoch, At: b.at, Revisions: []gateway.RevisionStats{b.rs}}
		}
		now := gateway.Stats{Node: node, Epoch: r.epoch, At: r.at, Revisions: []gateway.RevisionStats{*cur}}
		c.appendWindows(&w, node, now.Since(prev))
		if consume {
			c.setBase(revision, node, mark{epoch: r.epoch, at: r.at, rs: *cur})
			base = c.base[revision]
		}
	}
	if consume && len(c.base[revision]) == 0 {
		delete(c.base, revision)
	}
	return w
}

func (c *Collector) setBase(rev, node string, m mark) {
	b := c.base[rev]
	if b == nil {
		b = map[string]mark{}
		c.base[rev] = b
	}
	b[node] = m
}

// Prune drops the baselines of revisions no node reports any more; Take
// keeps them otherwise, so call it once in a while (TakeAll does).
func (c *Collector) Prune() {
	for rev, m := range c.base {
		for node := range m {
			if r, ok := c.latest[node]; !ok || r.revs[rev] == nil {
				delete(m, node)
			}
		}
		if len(m) == 0 {
			delete(c.base, rev)
		}
	}
}
