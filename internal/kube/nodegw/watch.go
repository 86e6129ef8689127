package nodegw

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scheme knows every type the daemon reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, netv1alpha1.AddToScheme, servingv1.AddToScheme, asv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// What a node's gateway reads, and nothing else: it writes nothing.
// Ingresses of kantai's class become its route table; the Revisions and
// PodAutoscalers they name give limits, timeouts and the autoscaler class;
// EndpointSlices give the ready replicas (and the latency peers), Services
// the ClusterIP of revisions Knative's activator serves, Nodes the node
// set. hack/generate.sh writes config/gateway/role.yaml from these.
//
// +kubebuilder:rbac:groups=networking.internal.knative.dev,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=serving.knative.dev,resources=revisions,verbs=get;list;watch
// +kubebuilder:rbac:groups=autoscaling.internal.knative.dev,resources=podautoscalers,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes;services,verbs=get;list;watch

// watcher keeps the caches the daemon reads (list and watch only) and
// says when they changed.
type watcher struct {
	cache cache.Cache
	// changed is poked (never blocking) on every relevant event; one
	// pending poke stands for any number of events.
	changed chan struct{}

	namespace, peers string
}

func newWatcher(cfg *rest.Config, namespace, peers string) (*watcher, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	private := labels.SelectorFromSet(labels.Set{LabelServiceType: ServiceTypePrivate})
	c, err := cache.New(cfg, cache.Options{
		Scheme:                      scheme,
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			// Only names matter: keep nothing else of a node.
			&corev1.Node{}:    {Transform: nodeName},
			&corev1.Service{}: {Label: labels.SelectorFromSet(labels.Set{LabelServiceType: ServiceTypePublic})},
			// The revisions' private slices anywhere, the gateways' own in
			// kantai's namespace.
			&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{
				namespace:           {LabelSelector: labels.SelectorFromSet(labels.Set{LabelServiceName: peers})},
				cache.AllNamespaces: {LabelSelector: private},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the caches: %w", err)
	}
	return &watcher{cache: c, changed: make(chan struct{}, 1), namespace: namespace, peers: peers}, nil
}

// nodeName keeps a Node's name and version.
func nodeName(o any) (any, error) {
	if n, ok := o.(*corev1.Node); ok {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}, nil
	}
	return o, nil
}

func (w *watcher) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// start registers the informers, starts them under run and waits until
// they synced or wait ends.
func (w *watcher) start(run, wait context.Context) error {
	all := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	// A node's updates (status, heartbeats) change nothing the gateway
	// holds: only its coming and going.
	nodes := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, o := range []client.Object{&netv1alpha1.Ingress{}, &servingv1.Revision{}, &asv1alpha1.PodAutoscaler{},
		&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{}} {
		inf, err := w.cache.GetInformer(run, o)
		if err != nil {
			return fmt.Errorf("watching %T: %w", o, err)
		}
		h := all
		if _, ok := o.(*corev1.Node); ok {
			h = nodes
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watching %T: %w", o, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- w.cache.Start(run) }()
	if !w.cache.WaitForCacheSync(wait) {
		select {
		case err := <-errc:
			return fmt.Errorf("caches: %w", err)
		default:
		}
		return fmt.Errorf("caches did not sync: %w", context.Cause(wait))
	}
	w.poke()
	return nil
}

// read takes a snapshot of the caches for node, and the latency peers.
func (w *watcher) read(ctx context.Context, node string) (Snapshot, map[string]string, error) {
	s := Snapshot{Node: node, Revisions: map[string]*servingv1.Revision{}, Autoscalers: map[string]*asv1alpha1.PodAutoscaler{},
		PublicServices: map[string]*corev1.Service{}, Slices: map[string][]*discoveryv1.EndpointSlice{}}
	// Nothing read is modified: no copies.
	nocopy := client.UnsafeDisableDeepCopy
	var ings netv1alpha1.IngressList
	if err := w.cache.List(ctx, &ings, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing Ingresses: %w", err)
	}
	for i := range ings.Items {
		s.Ingresses = append(s.Ingresses, &ings.Items[i])
	}
	var revs servingv1.RevisionList
	if err := w.cache.List(ctx, &revs, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing Revisions: %w", err)
	}
	for i := range revs.Items {
		s.Revisions[key(&revs.Items[i])] = &revs.Items[i]
	}
	var pas asv1alpha1.PodAutoscalerList
	if err := w.cache.List(ctx, &pas, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing PodAutoscalers: %w", err)
	}
	for i := range pas.Items {
		s.Autoscalers[key(&pas.Items[i])] = &pas.Items[i]
	}
	var svcs corev1.ServiceList
	if err := w.cache.List(ctx, &svcs, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing Services: %w", err)
	}
	for i := range svcs.Items {
		s.PublicServices[key(&svcs.Items[i])] = &svcs.Items[i]
	}
	var eps discoveryv1.EndpointSliceList
	if err := w.cache.List(ctx, &eps, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	var peerSlices []*discoveryv1.EndpointSlice
	for i := range eps.Items {
		e := &eps.Items[i]
		svc := e.Labels[LabelServiceName]
		if e.Namespace == w.namespace && svc == w.peers {
			peerSlices = append(peerSlices, e)
			continue
		}
		if e.Labels[LabelServiceType] == ServiceTypePrivate {
			k := e.Namespace + "/" + svc
			s.Slices[k] = append(s.Slices[k], e)
		}
	}
	var nodes corev1.NodeList
	if err := w.cache.List(ctx, &nodes, nocopy); err != nil {
		return s, nil, fmt.Errorf("listing Nodes: %w", err)
	}
	for _, n := range nodes.Items {
		s.Nodes = append(s.Nodes, n.Name)
	}
	return s, Peers(peerSlices), nil
}

func key(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }
