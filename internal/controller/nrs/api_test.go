package nrs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/k8stest"
)

func TestValidationRejections(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	tests := []struct {
		name   string
		mutate func(s *kantaiv1alpha1.NodeReplicaSet)
		want   string
	}{
		{"negative count", func(s *kantaiv1alpha1.NodeReplicaSet) { s.Spec.Replicas = map[string]int32{"n1": -1} },
			"replica counts must be at least 0"},
		{"uppercase node name", func(s *kantaiv1alpha1.NodeReplicaSet) { s.Spec.Replicas = map[string]int32{"Node1": 1} },
			"node names must be lowercase RFC 1123 subdomains"},
		{"node name with underscore", func(s *kantaiv1alpha1.NodeReplicaSet) { s.Spec.Replicas = map[string]int32{"n_1": 1} },
			"node names must be lowercase RFC 1123 subdomains"},
		{"node name too long", func(s *kantaiv1alpha1.NodeReplicaSet) {
			s.Spec.Replicas = map[string]int32{strings.Repeat("n", 64): 1}
		}, "node names must be at most 63 characters"},
		{"matchLabels not in template", func(s *kantaiv1alpha1.NodeReplicaSet) {
			s.Spec.Selector.MatchLabels = map[string]kantaiv1alpha1.LabelValue{"app": "other"}
		}, "selector.matchLabels must match template.metadata.labels"},
		{"matchExpressions not matching", func(s *kantaiv1alpha1.NodeReplicaSet) {
			s.Spec.Selector.MatchExpressions = []kantaiv1alpha1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []kantaiv1alpha1.LabelValue{"web"}}}
		}, "selector.matchExpressions must match template.metadata.labels"},
		{"empty selector", func(s *kantaiv1alpha1.NodeReplicaSet) { s.Spec.Selector = &kantaiv1alpha1.LabelSelector{} },
			"selector must not be empty"},
		{"bad operator", func(s *kantaiv1alpha1.NodeReplicaSet) {
			s.Spec.Selector.MatchExpressions = []kantaiv1alpha1.LabelSelectorRequirement{{Key: "app", Operator: "Like"}}
		}, "Unsupported value"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(ns, fmt.Sprintf("bad-%d", i), map[string]int32{"n1": 1})
			tc.mutate(s)
			err := k8sClient.Create(ctx, s)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create error = %v, want Invalid containing %q", err, tc.want)
			}
		})
	}

	t.Run("valid with expressions", func(t *testing.T) {
		s := newSet(ns, "good", map[string]int32{"node-1.example.com": 0})
		s.Spec.Selector.MatchExpressions = []kantaiv1alpha1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []kantaiv1alpha1.LabelValue{"good", "x"}},
			{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist},
		}
		if err := k8sClient.Create(ctx, s); err != nil {
			t.Fatalf("valid object rejected: %v", err)
		}
		// The selector is immutable.
		patch := `{"spec":{"selector":{"matchLabels":{"app":"good","x":"y"}},"template":{"metadata":{"labels":{"app":"good","x":"y"}}}}}`
		err := k8sClient.Patch(ctx, s, client.RawPatch("application/merge-patch+json", []byte(patch)))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "selector is immutable") {
			t.Fatalf("selector change error = %v, want Invalid: selector is immutable", err)
		}
		// Counts can change with a merge patch.
		mergePatch(t, ns, "good", `{"spec":{"replicas":{"node2":3}}}`)
		got := getSet(t, ns, "good")
		if got.Spec.Replicas["node2"] != 3 || len(got.Spec.Replicas) != 2 {
			t.Errorf("replicas after merge patch = %v", got.Spec.Replicas)
		}
	})
}

// TestPrinterColumns asks the API server for the table kubectl prints.
func TestPrinterColumns(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	a, b := ns+"-a", ns+"-b"
	createNodes(t, a, b)
	k8stest.StartKubelet(ctx, k8sClient, ns)
	if err := k8sClient.Create(ctx, newSet(ns, "cols", map[string]int32{a: 1, b: 2})); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "cols", "1-2/1-2", 30*time.Second)

	cs, err := kubernetes.NewForConfig(testEnv.Config)
	if err != nil {
		t.Fatal(err)
	}
	body, err := cs.Discovery().RESTClient().Get().
		AbsPath("/apis/kantai.dev/v1alpha1/namespaces/"+ns+"/nodereplicasets").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("decoding table: %v\n%s", err, body)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if got := strings.Join(cols, ","); got != "Name,Nodes,Ready,Age" {
		t.Errorf("columns = %s, want Name,Nodes,Ready,Age", got)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("rows = %d", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	if cells[0] != "cols" || cells[1] != a+","+b || cells[2] != "1-2/1-2" {
		t.Errorf("row = %v", cells)
	}

	// With kubectl, if there is one (KUBECTL or on PATH).
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl, _ = exec.LookPath("kubectl")
	}
	if kubectl == "" {
		t.Log("kubectl not found; the table was checked through the API only")
		return
	}
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", testEnv.Kubeconfig, "-n", ns, "get", "nrs").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nrs: %v\n%s", err, out)
	}
	t.Logf("kubectl get nrs:\n%s", out)
	header := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if strings.Join(header, " ") != "NAME NODES READY AGE" {
		t.Errorf("kubectl header = %v", header)
	}
	out, err = exec.CommandContext(ctx, kubectl, "--kubeconfig", testEnv.Kubeconfig, "-n", ns, "patch", "nrs", "cols",
		"--type=merge", "-p", fmt.Sprintf(`{"spec":{"replicas":{%q:3}}}`, b)).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	waitReady(t, ns, "cols", "1-3/1-3", 30*time.Second)
}

// TestManifestsServerSideDryRun applies every manifest under config/ to the
// API server with server-side apply and dry run.
func TestManifestsServerSideDryRun(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	// Namespaced objects need their namespace to exist, even in a dry run
	// (config/knative has Roles in Knative's namespace).
	for _, ns := range []string{"kantai-system", "knative-serving"} {
		if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// config/prometheus needs the Prometheus Operator's PodMonitor CRD.
	if err := installPodMonitorCRD(ctx); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "..", "..", "config")
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") || filepath.Base(path) == "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			err := k8sClient.Patch(ctx, obj, client.Apply, client.DryRunAll, client.FieldOwner("manifest-test"), client.ForceOwnership)
			if err != nil {
				t.Errorf("%s: %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Errorf("applied %d objects, expected at least 8", n)
	}
	t.Logf("%d objects accepted by server-side dry run", n)
}

// prometheusOperator is the release whose CRDs config/prometheus is
// checked against.
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// installPodMonitorCRD installs the PodMonitor CRD from the operator's
// module (downloaded through the Go module proxy) and waits until it is
// served.
func installPodMonitorCRD(ctx context.Context) error {
	out, err := exec.Command("go", "mod", "download", "-json", prometheusOperator).Output()
	if err != nil {
		return fmt.Errorf("downloading %s: %w", prometheusOperator, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("locating %s: %v (%s)", prometheusOperator, err, out)
	}
	crd := filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_podmonitors.yaml")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil, crd); err != nil {
		return err
	}
	return k8stest.Eventually(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		probe := &unstructured.Unstructured{}
		probe.SetAPIVersion("monitoring.coreos.com/v1")
		probe.SetKind("PodMonitor")
		probe.SetNamespace("default")
		probe.SetName("probe")
		_ = unstructured.SetNestedField(probe.Object, map[string]any{}, "spec", "selector")
		return k8sClient.Create(ctx, probe, client.DryRunAll) == nil, nil
	})
}
