package k8stest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KnativeAssetsEnv names the directory hack/knative-bins.sh prints:
// Knative Serving's controller and webhook and its manifests.
const KnativeAssetsEnv = "KNATIVE_ASSETS"

// KnativeSkipReason is the message of tests skipped for lack of Knative.
const KnativeSkipReason = "Knative integration test skipped: " + KnativeAssetsEnv + " is not set; run `make test-k8s`, " +
	"or `export " + KnativeAssetsEnv + "=$(hack/knative-bins.sh)` and go test again"

// KnativeAssets returns the Knative assets directory, or "" when not set.
func KnativeAssets() string { return os.Getenv(KnativeAssetsEnv) }

// KnativeNamespace is Knative Serving's system namespace.
const KnativeNamespace = "knative-serving"

// KnativeOptions configure StartKnative.
type KnativeOptions struct {
	// Config is merged into Knative's config maps, by config map name
	// (e.g. "config-autoscaler": {"allow-zero-initial-scale": "true"}).
	// Image tag resolution is always skipped for example.local, and
	// config-domain gets example.com.
	Config map[string]map[string]string
	// Webhook runs Knative's webhook (defaulting and validation, also of
	// /status writes); without it nothing is defaulted.
	Webhook bool
}

// Knative is Knative Serving 1.15's own controller (and webhook) running
// out of cluster against the Env.
type Knative struct {
	// Dir is the assets directory.
	Dir string
}

// StartKnative installs Knative Serving's CRDs and config maps from the
// assets directory, starts its webhook (when asked) and its controller as
// processes, and returns once the controller leads. The Env must run the
// garbage collector for cascading deletes, and the endpoints controller and
// kwok (or another source of ready pods) for ServerlessServices to become
// ready. Knative's processes stop with the Env.
//
// Out of cluster, the API server reaches the webhook through a Service of
// type ExternalName pointing at localhost (TLS still checks
// webhook.knative-serving.svc, which the webhook's own certificate
// covers); the webhook configurations get its port. The ServerlessService
// reconciler needs Endpoints of knative-serving/activator-service with an
// address outside 127/8: a selector-less Service keeps them.
func (e *Env) StartKnative(ctx context.Context, c client.Client, opts KnativeOptions) (*Knative, error) {
	dir := KnativeAssets()
	if dir == "" {
		return nil, errors.New(KnativeSkipReason)
	}
	m := filepath.Join(dir, "manifests")
	if err := ApplyFiles(ctx, c, nil, filepath.Join(m, "100-namespace.yaml")); err != nil {
		return nil, err
	}
	crds, err := filepath.Glob(filepath.Join(m, "crds", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if err := ApplyFiles(ctx, c, nil, crds...); err != nil {
		return nil, err
	}
	if err := waitCRDsEstablished(ctx, c, crds); err != nil {
		return nil, err
	}
	cms, err := filepath.Glob(filepath.Join(m, "configmaps", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if err := ApplyFiles(ctx, c, nil, cms...); err != nil {
		return nil, err
	}
	config := map[string]map[string]string{
		"config-deployment": {
			"queue-sidecar-image":               "example.local/knative/queue:test",
			"registries-skipping-tag-resolving": "kind.local,ko.local,dev.local,example.local",
		},
		"config-domain": {"example.com": ""},
	}
	for name, data := range opts.Config {
		if config[name] == nil {
			config[name] = map[string]string{}
		}
		for k, v := range data {
			config[name][k] = v
		}
	}
	for name, data := range config {
		if err := SetConfig(ctx, c, KnativeNamespace, name, data); err != nil {
			return nil, err
		}
	}
	if err := applyObjects(ctx, c, fakeActivator); err != nil {
		return nil, fmt.Errorf("activator endpoints: %w", err)
	}

	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	common := []string{"SYSTEM_NAMESPACE=" + KnativeNamespace, "METRICS_DOMAIN=knative.dev/serving", "KUBECONFIG=" + e.Kubeconfig}
	if opts.Webhook {
		// A port found free can be taken before the webhook binds it on a
		// busy machine; then try other ports.
		for attempt := 1; ; attempt++ {
			err := e.startWebhook(ctx, c, dir, ports[0], append(common,
				"POD_NAME=webhook-test", "WEBHOOK_NAME=webhook", "WEBHOOK_PORT="+strconv.Itoa(ports[0]),
				"PROFILING_PORT="+strconv.Itoa(ports[1]), "METRICS_PROMETHEUS_PORT="+strconv.Itoa(ports[2])))
			if err == nil {
				break
			}
			if !errors.Is(err, errPortTaken) || attempt == 3 {
				return nil, err
			}
			if ports, err = freePorts(5); err != nil {
				return nil, err
			}
		}
	}
	// The controller's health-probe port 8080 is fixed in Knative's code;
	// when it is taken the controller still reconciles.
	p, err := e.runEnv("knative-controller", filepath.Join(dir, "controller"), append(common,
		"POD_NAME=controller-test", "PROFILING_PORT="+strconv.Itoa(ports[3]), "METRICS_PROMETHEUS_PORT="+strconv.Itoa(ports[4])))
	if err != nil {
		return nil, err
	}
	const leading = "successfully acquired lease knative-serving/controller.knative.dev.serving.pkg.reconciler.route"
	if err := e.waitLog(ctx, p, leading, 2*time.Minute); err != nil {
		return nil, err
	}
	return &Knative{Dir: dir}, nil
}

// fakeActivator stands for Knative's activator, which the tests do not run.
const fakeActivator = `
apiVersion: v1
kind: Service
metadata: {name: activator-service, namespace: knative-serving}
spec:
  ports: [{name: http, port: 80, targetPort: 8012}, {name: http2, port: 81, targetPort: 8013}, {name: https, port: 443, targetPort: 8112}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: activator-service, namespace: knative-serving}
subsets:
- addresses: [{ip: 10.255.0.250}]
  ports: [{name: http, port: 8012}, {name: http2, port: 8013}, {name: https, port: 8112}]
`

func (e *Env) startWebhook(ctx context.Context, c client.Client, dir string, port int, env []string) error {
	m := filepath.Join(dir, "manifests", "webhooks")
	svc := `
apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: knative-serving}
spec: {type: ExternalName, externalName: localhost}
`
	if err := applyObjects(ctx, c, svc); err != nil {
		return fmt.Errorf("webhook service: %w", err)
	}
	if err := ApplyFiles(ctx, c, nil, filepath.Join(m, "secret.yaml")); err != nil {
		return err
	}
	p, err := e.runEnv("knative-webhook", filepath.Join(dir, "webhook"), env)
	if err != nil {
		return err
	}
	p.kill = true // it drains for seconds after SIGTERM
	portTaken := func() error {
		b, _ := os.ReadFile(e.LogPath(p.name))
		if bytes.Contains(b, []byte("bind: address already in use")) {
			e.stop(p)
			return fmt.Errorf("webhook port %d: %w", port, errPortTaken)
		}
		return nil
	}
	if err := e.wait(ctx, p, 2*time.Minute, func(ctx context.Context) (bool, error) {
		s := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: KnativeNamespace, Name: "webhook-certs"}, s); err != nil {
			return false, err
		}
		return len(s.Data["ca-cert.pem"]) > 0, nil
	}); err != nil {
		if taken := portTaken(); taken != nil {
			return taken
		}
		return fmt.Errorf("webhook certificate: %w", err)
	}
	// The webhook's own reconciler refuses url: client configs; keep the
	// service reference and add the port.
	addPort := func(u *unstructured.Unstructured) {
		hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		for i := range hooks {
			h, ok := hooks[i].(map[string]any)
			if !ok {
				continue
			}
			_ = unstructured.SetNestedField(h, int64(port), "clientConfig", "service", "port")
			hooks[i] = h
		}
		_ = unstructured.SetNestedSlice(u.Object, hooks, "webhooks")
	}
	files := []string{"configmap-validation.yaml", "defaulting.yaml", "resource-validation.yaml"}
	for i := range files {
		files[i] = filepath.Join(m, files[i])
	}
	if err := ApplyFiles(ctx, c, addPort, files...); err != nil {
		return err
	}
	// Ready once a Service passes a server-side dry run (the webhook has
	// filled in its configurations' CA bundles and answers).
	probe := &unstructured.Unstructured{}
	probe.SetAPIVersion("serving.knative.dev/v1")
	probe.SetKind("Service")
	probe.SetNamespace("default")
	probe.SetName("webhook-probe")
	_ = unstructured.SetNestedSlice(probe.Object, []any{map[string]any{"image": "example.local/probe:v1"}},
		"spec", "template", "spec", "containers")
	err = e.wait(ctx, p, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if err := portTaken(); err != nil {
			return false, err
		}
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err == nil, err
	})
	if taken := portTaken(); taken != nil {
		return taken
	}
	return err
}

// errPortTaken: a process could not listen on the port chosen for it.
var errPortTaken = errors.New("port taken")

// stop kills p and forgets it.
func (e *Env) stop(p *proc) {
	_ = p.cmd.Process.Kill()
	<-p.done
	p.done <- nil
	for i, q := range e.procs {
		if q == p {
			e.procs = append(e.procs[:i], e.procs[i+1:]...)
			break
		}
	}
}

// wait polls cond while p runs.
func (e *Env) wait(ctx context.Context, p *proc, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	return Eventually(ctx, timeout, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		select {
		case err := <-p.done:
			p.done <- err
			return false, fmt.Errorf("%s exited (%v); see %s", p.name, err, e.LogPath(p.name))
		default:
		}
		return cond(ctx)
	})
}

// waitLog waits until p's log contains line.
func (e *Env) waitLog(ctx context.Context, p *proc, line string, timeout time.Duration) error {
	err := e.wait(ctx, p, timeout, func(context.Context) (bool, error) {
		b, err := os.ReadFile(e.LogPath(p.name))
		return err == nil && bytes.Contains(b, []byte(line)), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %q in %s: %w", line, e.LogPath(p.name), err)
	}
	return nil
}

// SetConfig merges data into a config map.
func SetConfig(ctx context.Context, c client.Client, ns, name string, data map[string]string) error {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
		return c.Create(ctx, cm)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for k, v := range data {
		cm.Data[k] = v
	}
	if err := c.Update(ctx, cm); err != nil {
		return fmt.Errorf("updating config map %s/%s: %w", ns, name, err)
	}
	return nil
}

// ApplyFiles applies every object of the YAML files with server-side
// apply, after mutate (when not nil).
func ApplyFiles(ctx context.Context, c client.Client, mutate func(*unstructured.Unstructured), paths ...string) error {
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := decodeYAML(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, o := range objs {
			if mutate != nil {
				mutate(o)
			}
			if err := apply(ctx, c, o); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return nil
}

func applyObjects(ctx context.Context, c client.Client, yaml string) error {
	objs, err := decodeYAML([]byte(yaml))
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := apply(ctx, c, o); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, c client.Client, o *unstructured.Unstructured) error {
	o.SetManagedFields(nil)
	o.SetResourceVersion("")
	//nolint:staticcheck // unstructured server-side apply, as the manifests test does
	if err := c.Patch(ctx, o, client.Apply, client.FieldOwner("k8stest"), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(o.Object) > 0 {
			out = append(out, o)
		}
	}
}

// waitCRDsEstablished waits until the CRDs of the files are Established.
func waitCRDsEstablished(ctx context.Context, c client.Client, paths []string) error {
	var names []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := decodeYAML(data)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				names = append(names, o.GetName())
			}
		}
	}
	return Eventually(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			crd := &unstructured.Unstructured{}
			crd.SetAPIVersion("apiextensions.k8s.io/v1")
			crd.SetKind("CustomResourceDefinition")
			if err := c.Get(ctx, types.NamespacedName{Name: n}, crd); err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			established := false
			for _, x := range conds {
				if m, ok := x.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if !established {
				return false, fmt.Errorf("CRD %s not established", n)
			}
		}
		return true, nil
	})
}

// freePorts returns n distinct TCP ports free on loopback, taken at
// random below Linux's ephemeral range (32768 and up), where outgoing
// connections of other processes do not take them in the meantime.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free port found in 20000-32767")
		}
		port := 20000 + rand.IntN(12768)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		out = append(out, port)
	}
	return out, nil
}

// KnativeService is a serving.knative.dev/v1 Service of one container,
// image example.local/hello:v1, with the given template annotations and
// environment.
func KnativeService(ns, name string, annotations, env map[string]string) *unstructured.Unstructured {
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("serving.knative.dev/v1")
	svc.SetKind("Service")
	svc.SetNamespace(ns)
	svc.SetName(name)
	ann := map[string]any{}
	for k, v := range annotations {
		ann[k] = v
	}
	container := map[string]any{"image": "example.local/hello:v1"}
	if len(env) > 0 {
		var vars []any
		for _, k := range slices.Sorted(maps.Keys(env)) {
			vars = append(vars, map[string]any{"name": k, "value": env[k]})
		}
		container["env"] = vars
	}
	svc.Object["spec"] = map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": ann},
		"spec":     map[string]any{"containers": []any{container}},
	}}
	return svc
}
