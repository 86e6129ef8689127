package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI_testbedValidateAndShow(t *testing.T) {
	out, err := kantai(t, "testbed", "validate", "../../examples/testbeds/regions-100.yaml", "../../bench/scenarios/grid-10u-50ms.yaml")
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, want := range []string{"regions-100.yaml: valid testbed: 100 nodes, 4950 links", "grid-10u-50ms.yaml: valid scenario: 3 nodes, 3 links"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("nodes:\n- {name: a}\n- {name: b}\nlinks:\n- {a: a, b: b, latency: 1ms, jitter: 500ms}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = kantai(t, "testbed", "validate", bad)
	if err == nil || !strings.Contains(out, bad+": links[0].jitter: 500ms is more than the latency 1ms") {
		t.Errorf("validate of a bad file: %v\n%s\nwant the file and field named", err, out)
	}
	out, err = kantai(t, "testbed", "show", "../../examples/testbeds/regions-30.yaml")
	if err != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	for _, want := range []string{"30 nodes, 435 links", "edge-b-10  edge   edge-b", "cloud-a-1  edge-a-1   2ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	out, err = kantai(t, "testbed", "show", "-o", "yaml", "../../examples/testbeds/regions-30.yaml")
	if err != nil {
		t.Fatalf("show -o yaml: %v", err)
	}
	expanded := filepath.Join(t.TempDir(), "expanded.yaml")
	if err := os.WriteFile(expanded, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kantai(t, "testbed", "validate", expanded); err != nil || !strings.Contains(out, "30 nodes, 435 links") {
		t.Errorf("the expanded testbed does not validate: %v\n%s", err, out)
	}
}
