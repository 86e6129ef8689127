package plot

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func nonEmptyPNG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if len(b) < 100 || string(b[1:4]) != "PNG" {
		t.Errorf("%s is not a PNG (%d bytes)", path, len(b))
	}
}

func ramp(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * step
	}
	return out
}

func TestCDF(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		series []Series
	}{
		{name: "policies and oracle", series: []Series{
			{Name: "knative", Latencies: ramp(5000, 30*time.Microsecond)},
			{Name: "kantai", Latencies: ramp(3000, 5*time.Microsecond)},
			{Name: "oracle", Latencies: ramp(100, 50*time.Microsecond), Dashed: true},
		}},
		{name: "one sample", series: []Series{{Name: "kantai", Latencies: ramp(1, time.Millisecond)}}},
		{name: "no data", series: []Series{{Name: "knative"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".png")
			if err := CDF(path, tt.name, tt.series); err != nil {
				t.Fatalf("CDF() error = %v", err)
			}
			nonEmptyPNG(t, path)
		})
	}
}

func TestServedWhere(t *testing.T) {
	dir := t.TempDir()
	nodes := []string{"node1", "node2", "node3"}
	var many []Group
	for _, p := range []string{"knative", "round-robin", "local-first", "faast", "kantai"} {
		for _, o := range []string{"all", "node1", "node2", "node3"} {
			many = append(many, Group{Policy: p, Origin: o, Shares: map[string]float64{"node1": 0.2, "node2": 0.3, "node3": 0.5}})
		}
	}
	tests := []struct {
		name   string
		groups []Group
	}{
		{name: "two policies", groups: []Group{
			{Policy: "knative", Origin: "node3", Shares: map[string]float64{"node1": 0.33, "node2": 0.34, "node3": 0.33}},
			{Policy: "kantai", Origin: "node3", Shares: map[string]float64{"node3": 0.9, "node1": 0.1}},
		}},
		{name: "unknown serving node", groups: []Group{
			{Policy: "kantai", Origin: "all", Shares: map[string]float64{"": 0.5, "node3": 0.5}},
		}},
		{name: "many groups", groups: many},
		{name: "no data", groups: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".png")
			if err := ServedWhere(path, tt.name, nodes, tt.groups); err != nil {
				t.Fatalf("ServedWhere() error = %v", err)
			}
			nonEmptyPNG(t, path)
		})
	}
}

func TestCDF_badPath(t *testing.T) {
	err := CDF(filepath.Join(t.TempDir(), "missing", "x.png"), "x", []Series{{Name: "a", Latencies: ramp(3, time.Millisecond)}})
	if err == nil {
		t.Error("CDF() into a missing directory: error = nil, want an error")
	}
}
