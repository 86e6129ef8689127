// Command kantai-controller runs kantai's Kubernetes controllers in one
// process, with leader election: the NodeReplicaSet controller always,
// and with --pod-autoscaler the reconciler of Knative PodAutoscalers of the
// class autoscaling.kantai.dev (this needs Knative Serving's CRDs).
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/controller/pa"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kantai-controller:", err)
		os.Exit(1)
	}
}

// defaultNamespace is the pod's namespace (POD_NAMESPACE, from the
// downward API), else kantai-system.
func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return pa.DefaultNamespace
}

func run() error {
	var (
		metricsAddr    = flag.String("metrics-bind-address", ":8080", "address of the metrics endpoint (0 disables it)")
		probeAddr      = flag.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
		leaderElect    = flag.Bool("leader-elect", true, "elect a leader, so that only one replica acts at a time")
		leaderNS       = flag.String("leader-election-namespace", "", "namespace of the leader election lease (default: the pod's namespace)")
		qps            = flag.Float64("kube-api-qps", 50, "queries per second to the API server")
		burst          = flag.Int("kube-api-burst", 100, "burst of queries to the API server")
		workers        = flag.Int("workers", 4, "NodeReplicaSets reconciled in parallel")
		burstReplicas  = flag.Int("burst-replicas", nrs.DefaultBurstReplicas, "most pods created, and most deleted, by one reconcile")
		expectationTTL = flag.Duration("expectations-ttl", nrs.DefaultExpectationsTTL, "how long unobserved pod writes block new decisions")
		podAutoscaler  = flag.Bool("pod-autoscaler", false, "reconcile Knative PodAutoscalers of the class "+pa.Class+" (needs Knative Serving's CRDs)")
		namespace      = flag.String("namespace", defaultNamespace(), "namespace of the config-kantai ConfigMap")
		knativeNS      = flag.String("knative-namespace", pa.DefaultKnativeNamespace, "Knative Serving's namespace (config-autoscaler)")
		paWorkers      = flag.Int("pa-workers", 4, "PodAutoscalers reconciled in parallel")
		tick           = flag.Duration("tick", pa.DefaultTick, "how often each PodAutoscaler's control step runs")
	)
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kantaiv1alpha1.AddToScheme, asv1alpha1.AddToScheme, netv1alpha1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return err
		}
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst

	byObject := nrs.CacheByObject()
	if *podAutoscaler {
		maps.Copy(byObject, pa.CacheByObject(*namespace, *knativeNS))
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cache.Options{ByObject: byObject},
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "controller.kantai.dev",
		LeaderElectionNamespace: *leaderNS,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	r := &nrs.Reconciler{
		Expectations:  nrs.NewExpectations(*expectationTTL, nil),
		BurstReplicas: *burstReplicas,
	}
	if err := r.SetupWithManager(mgr, *workers); err != nil {
		return fmt.Errorf("setting up the NodeReplicaSet controller: %w", err)
	}
	if *podAutoscaler {
		p := &pa.Reconciler{Namespace: *namespace, KnativeNamespace: *knativeNS, Tick: *tick}
		if err := p.SetupWithManager(mgr, *paWorkers); err != nil {
			return fmt.Errorf("setting up the PodAutoscaler reconciler: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
