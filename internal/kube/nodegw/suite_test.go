package nodegw_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/kube/nodegw"
)

// kantai's namespace in these tests, as in config/.
const kantaiNamespace = "kantai-system"

// serviceAccount is the gateway's ServiceAccount in config/gateway.
const serviceAccount = "system:serviceaccount:" + kantaiNamespace + ":kantai-gateway"

var (
	scheme    *runtime.Scheme
	testEnv   *k8stest.Env
	k8sClient client.Client
	// saConfig acts as serviceAccount, bound to config/gateway's
	// ClusterRole: a missing permission fails the tests.
	saConfig *rest.Config
)

// TestMain starts kube-apiserver and etcd with Knative's Ingress,
// Revision and PodAutoscaler CRDs (from the Knative assets, which copy
// them from the knative.dev/networking and serving module zips) when
// KUBEBUILDER_ASSETS and KNATIVE_ASSETS are set; otherwise the
// integration tests skip. No Knative controller runs: the tests write the
// objects Knative would.
func TestMain(m *testing.M) { k8stest.Main(m, true, func() int { return runWithEnv(m) }) }

func runWithEnv(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard())
	var err error
	if scheme, err = nodegw.Scheme(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	crds := filepath.Join(k8stest.KnativeAssets(), "manifests", "crds")
	start := time.Now()
	env, err := k8stest.Start(k8stest.Options{
		CRDDirectoryPaths: []string{filepath.Join(crds, "ingress.yaml"), filepath.Join(crds, "revision.yaml"),
			filepath.Join(crds, "podautoscaler.yaml")},
		Scheme: scheme,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer env.Stop()
	fmt.Printf("control plane up in %v (logs in %s)\n", time.Since(start).Round(time.Millisecond), env.Dir)
	testEnv = env
	if k8sClient, err = client.New(env.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kantaiNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root := filepath.Join("..", "..", "..", "config", "gateway")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil, filepath.Join(root, "service_account.yaml"),
		filepath.Join(root, "role.yaml"), filepath.Join(root, "role_binding.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "installing RBAC:", err)
		return 1
	}
	saConfig = rest.CopyConfig(env.Config)
	saConfig.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount}
	return m.Run()
}

func requireEnv(tb testing.TB) {
	tb.Helper()
	if testEnv == nil {
		if k8stest.Assets() == "" {
			tb.Skip(k8stest.SkipReason)
		}
		tb.Skip(k8stest.KnativeSkipReason)
	}
}
