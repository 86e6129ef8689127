package latency

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	measured := func(rtt float64, s int) Entry { return Entry{RTT: rtt, Samples: 1, Updated: at(s)} }
	estimated := func(rtt float64, s int) Entry { return Entry{RTT: rtt, Estimated: true, Updated: at(s)} }
	tests := []struct {
		name  string
		views []Matrix
		want  Matrix
	}{
		{"nothing", nil, Matrix{}},
		{"one view is copied", []Matrix{{"a": {"b": measured(1, 1)}}}, Matrix{"a": {"b": measured(1, 1)}}},
		{"rows and paths are united", []Matrix{
			{"a": {"b": measured(1, 1)}},
			{"a": {"c": measured(2, 1)}, "b": {"a": measured(3, 1)}},
		}, Matrix{"a": {"b": measured(1, 1), "c": measured(2, 1)}, "b": {"a": measured(3, 1)}}},
		{"newer wins, whatever the order", []Matrix{
			{"a": {"b": measured(1, 1), "c": measured(5, 9)}},
			{"a": {"b": measured(2, 2), "c": measured(6, 8)}},
		}, Matrix{"a": {"b": measured(2, 2), "c": measured(5, 9)}}},
		{"tie keeps the earlier view", []Matrix{
			{"a": {"b": measured(1, 1)}},
			{"a": {"b": measured(2, 1)}},
		}, Matrix{"a": {"b": measured(1, 1)}}},
		{"tie: more samples win", []Matrix{
			{"a": {"b": {RTT: 1, Samples: 3, Updated: at(1)}}},
			{"a": {"b": {RTT: 2, Samples: 8, Updated: at(1)}}},
			{"a": {"b": {RTT: 3, Samples: 8, Updated: at(1)}}},
		}, Matrix{"a": {"b": {RTT: 2, Samples: 8, Updated: at(1)}}}},
		{"tie: measured beats estimated", []Matrix{
			{"a": {"b": estimated(1, 1)}},
			{"a": {"b": measured(2, 1)}},
		}, Matrix{"a": {"b": measured(2, 1)}}},
		{"newer estimate beats older measurement", []Matrix{
			{"a": {"b": measured(2, 1)}},
			{"a": {"b": estimated(1, 2)}},
		}, Matrix{"a": {"b": estimated(1, 2)}}},
		{"stale newer entry still wins", []Matrix{
			{"a": {"b": measured(2, 1)}},
			{"a": {"b": {RTT: 2, Samples: 1, Failures: 1, Stale: true, Updated: at(2)}}},
		}, Matrix{"a": {"b": {RTT: 2, Samples: 1, Failures: 1, Stale: true, Updated: at(2)}}}},
		{"empty and nil rows", []Matrix{{"a": nil}, {"b": {}}}, Matrix{"a": {}, "b": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []Matrix
			for _, v := range tt.views {
				before = append(before, v.clone())
			}
			got := Merge(tt.views...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Merge (-want,+got):\n%s", diff)
			}
			// Writing to the result must not reach the arguments.
			for _, row := range got {
				for to := range row {
					row[to] = Entry{RTT: -1}
				}
			}
			if diff := cmp.Diff(before, tt.views, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Merge's arguments changed (-before,+after):\n%s", diff)
			}
		})
	}
}
