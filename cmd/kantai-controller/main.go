// Command kantai-controller runs kantai's Kubernetes controllers in one
// process, with leader election: the NodeReplicaSet controller always;
// with --pod-autoscaler the reconciler of Knative PodAutoscalers of the
// class autoscaling.kantai.dev (this needs Knative Serving's CRDs); with
// --ingress the status reconciler of Knative Ingresses of the class
// kantai.ingress.networking.knative.dev. Either of the last two runs the
// gateway poller on the leader, which reads every node gateway's API with
// the bearer token of --node-token-file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strings"

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
	"kantai.dev/kantai/internal/controller/gateways"
	"kantai.dev/kantai/internal/controller/ingress"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/controller/pa"
	kingress "kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/kube/emulated"
	"kantai.dev/kantai/internal/nodeapi"
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
		ingressOn      = flag.Bool("ingress", false, "write the status of Knative Ingresses of the class "+kingress.Class)
		tokenFile      = flag.String("node-token-file", "", "file holding the bearer token of the node gateways' API (required with --pod-autoscaler or --ingress)")
		gatewayNS      = flag.String("gateway-namespace", defaultNamespace(), "namespace of the gateway DaemonSet and its Services ("+gateways.DefaultService+", kantai-gateway, kantai-gateway-internal)")
		emulation      = flag.String("emulation", "", "emulated clusters on one machine only: the file that places the pods' virtual addresses on loopback (see docs/kubernetes.md)")
		clusterDomain  = flag.String("cluster-domain", "cluster.local", "the cluster's DNS domain, in the gateway Services' names in Ingress status")
		pollInterval   = flag.Duration("gateway-poll-interval", gateways.DefaultInterval, "how often the leader reads every node gateway")
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

	var token string
	if *podAutoscaler || *ingressOn {
		t, err := readToken(*tokenFile)
		if err != nil {
			return err
		}
		token = t
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
	if *podAutoscaler || *ingressOn {
		maps.Copy(byObject, gateways.CacheByObject(*gatewayNS, ""))
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
	var poller *gateways.Poller
	if *podAutoscaler || *ingressOn {
		api := nodeapi.NewClient(token, gateways.DefaultTimeout)
		if *emulation != "" {
			c, err := emulated.Load(*emulation)
			if err != nil {
				return fmt.Errorf("--emulation: %w", err)
			}
			dial, err := c.AddressDialer()
			if err != nil {
				return fmt.Errorf("--emulation: %w", err)
			}
			api.HTTP.Transport = &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 2}
		}
		poller = &gateways.Poller{Client: mgr.GetClient(), Namespace: *gatewayNS, Interval: *pollInterval, API: api}
		if err := mgr.Add(poller); err != nil {
			return fmt.Errorf("adding the gateway poller: %w", err)
		}
	}
	if *podAutoscaler {
		p := &pa.Reconciler{Namespace: *namespace, KnativeNamespace: *knativeNS, Tick: *tick,
			Gateways: poller, Triggers: poller.RevisionEvents()}
		if err := p.SetupWithManager(mgr, *paWorkers); err != nil {
			return fmt.Errorf("setting up the PodAutoscaler reconciler: %w", err)
		}
	}
	if *ingressOn {
		ir := &ingress.Reconciler{Gateways: poller, Changes: poller.ViewEvents(),
			LoadBalancer: kingress.ServiceLoadBalancer(*gatewayNS, *clusterDomain)}
		if err := ir.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the Ingress reconciler: %w", err)
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

// readToken reads the node API's bearer token from a file (a mounted
// Secret); surrounding white space is dropped.
func readToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("--node-token-file is required with --pod-autoscaler or --ingress: the gateway poller needs the node API's token")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--node-token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--node-token-file: %s is empty", path)
	}
	return t, nil
}
