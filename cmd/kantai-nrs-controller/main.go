// Command kantai-nrs-controller runs the NodeReplicaSet controller.
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/nrs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kantai-nrs-controller:", err)
		os.Exit(1)
	}
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
	)
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := kantaiv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cache.Options{ByObject: nrs.CacheByObject()},
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "nodereplicaset.kantai.dev",
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
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
