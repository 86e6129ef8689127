package latency

import (
	"testing"
	"time"
)

func TestView_merge(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"a", "b", "c"})
	if err := v.observe("b", ms(20), sec(1), nil, nil); err != nil {
		t.Fatal(err)
	}
	v.observe("c", ms(4), sec(1), nil, nil)
	v.merge("b", Row{"a": {RTT: 0.021, Samples: 3, Updated: sec(1)}, "c": {RTT: 0.002, Samples: 3, Updated: sec(1)}})
	// An older report does not overwrite a newer one.
	v.merge("b", Row{"c": {RTT: 0.5, Samples: 1, Updated: sec(0)}})
	// Nobody overwrites the node's own row.
	v.merge("a", Row{"b": {RTT: 9, Updated: sec(9)}})
	v.fail("c", sec(2))

	m := v.snapshot(sec(2), freshness{staleAfter: 3 * time.Second})
	tests := []struct {
		from, to  string
		want      time.Duration
		wantStale bool
	}{
		{"a", "b", ms(20), false},
		{"a", "c", ms(4), true}, // last probe failed; value kept
		{"b", "a", ms(21), false},
		{"b", "c", ms(2), false},
	}
	for _, tt := range tests {
		got, ok := m.Get(tt.from, tt.to)
		if !ok || !near(got, tt.want) || m[tt.from][tt.to].Stale != tt.wantStale {
			t.Errorf("%s→%s = %v, %v, stale %v; want %v, stale %v", tt.from, tt.to, got, ok, m[tt.from][tt.to].Stale, tt.want, tt.wantStale)
		}
	}
	if m["a"]["c"].Failures != 1 {
		t.Errorf("a→c failures = %d, want 1", m["a"]["c"].Failures)
	}
	if _, ok := m.Get("c", "a"); ok {
		t.Errorf("c→a known without any report from c")
	}
	// Without news for longer than staleAfter, b's row goes stale.
	late := v.snapshot(sec(10), freshness{staleAfter: 3 * time.Second})
	if !late["b"]["c"].Stale || !late["a"]["b"].Stale {
		t.Errorf("entries not marked stale after silence: %+v", late)
	}
	// Snapshots are copies.
	m["a"]["b"] = Entry{}
	if got, _ := v.snapshot(sec(2), freshness{staleAfter: time.Hour}).Get("a", "b"); !near(got, ms(20)) {
		t.Errorf("changing a snapshot changed the view")
	}
	// A success clears the failure.
	v.observe("c", ms(6), sec(3), nil, nil)
	if e := v.row(sec(3), freshness{staleAfter: time.Hour})["c"]; e.Stale || e.Failures != 0 || e.Samples != 2 {
		t.Errorf("after a success a→c = %+v", e)
	}
}
