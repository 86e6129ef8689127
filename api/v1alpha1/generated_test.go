package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesUpToDate runs hack/generate.sh (controller-gen, pinned)
// on a copy of the module and compares its output with the committed files.
// It needs the Go module proxy or a filled module cache; -short skips it.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs controller-gen; skipped with -short")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "api", "internal", "config", "hack"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, p), tmp).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v\n%s", p, err, out)
		}
	}
	generated := []string{
		"api/v1alpha1/zz_generated.deepcopy.go",
		"config/crd/bases/kantai.dev_nodereplicasets.yaml",
		"config/rbac/role.yaml",
		"config/knative/rbac/role.yaml",
		"config/gateway/role.yaml",
	}
	for _, f := range generated {
		if err := os.Remove(filepath.Join(tmp, f)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(tmp, "hack", "generate.sh"))
	cmd.Env = append(os.Environ(), "ROOT="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, out)
	}
	for _, f := range generated {
		want, err := os.ReadFile(filepath.Join(tmp, f))
		if err != nil {
			t.Fatalf("%s not generated: %v", f, err)
		}
		got, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run `make generate` (hack/generate.sh) and commit", f)
		}
	}
}
