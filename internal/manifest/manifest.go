// Package manifest reads Knative Service manifests (serving.knative.dev/v1)
// into the function specs kantai runs. It accepts what a Knative user writes
// for a single-container service and rejects, with the field's path, what
// kantai would silently get wrong.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"kantai.dev/kantai/internal/autoscale"
)

// Annotation keys of kantai's own, read by the built-in function's
// emulation. Knative's autoscaling annotations are read by package
// autoscale.
const (
	// AnnProcessing sets the emulated processing time of the built-in
	// function: "4ms", "fixed:4ms", "exp:4ms" or "uniform:3ms-5ms".
	AnnProcessing = "kantai.dev/processing-time"
	// AnnWorkers sets how many requests one replica of the built-in function
	// processes at once; further requests wait inside the replica.
	AnnWorkers = "kantai.dev/workers"
)

// LocalSettings are the autoscaler settings of the embedded fleet:
// Knative's defaults, with initial-scale 0 allowed.
func LocalSettings() autoscale.Settings {
	s := autoscale.DefaultSettings()
	s.AllowZeroInitialScale = true
	return s
}

// Function is one deployable function, as kantai runs it.
type Function struct {
	Name      string
	Namespace string
	Image     string
	Env       []EnvVar
	// Port is the container port the function listens on ($PORT).
	Port int
	// ContainerConcurrency is the hard limit of requests in flight per
	// replica; 0 means unlimited.
	ContainerConcurrency int
	// Timeout bounds one request (spec.template.spec.timeoutSeconds); 0
	// means the platform's default.
	Timeout time.Duration
	// ResponseStartTimeout bounds the wait for the response headers
	// (spec.template.spec.responseStartTimeoutSeconds); 0 means Timeout.
	ResponseStartTimeout time.Duration
	// ReadinessPath is the HTTP path probed for readiness; empty means a TCP
	// connect probe, Knative's default.
	ReadinessPath string
	// Nodes restricts placement to these nodes (required node affinity on
	// kubernetes.io/hostname, or nodeSelector); empty means any node.
	Nodes []string
	// Annotations are the revision's annotations: the Service's, overridden
	// by the template's.
	Annotations map[string]string
	// Scaling is the autoscaling spec the annotations give.
	Scaling autoscale.Spec
	// RevisionName is the template's metadata.name, when the user names
	// the revision; empty means the next generated name.
	RevisionName string
	// Traffic is spec.traffic; empty means all traffic to the latest ready
	// revision.
	Traffic []Traffic
	// Warnings lists what was understood but has no effect.
	Warnings []string
	// Processing and Workers configure the built-in function's emulation.
	Processing Processing
	Workers    int
}

// Key returns "namespace/name".
func (f *Function) Key() string { return f.Namespace + "/" + f.Name }

// EnvVar is a literal environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Traffic is one entry of spec.traffic.
type Traffic struct {
	// RevisionName pins a revision; empty with LatestRevision.
	RevisionName string
	// LatestRevision follows the latest ready revision.
	LatestRevision bool
	// Percent is the share of the Service's traffic, 0–100.
	Percent int
	// Tag, when set, also names the target on its own host:
	// <tag>-<name>.<namespace>….
	Tag string
}

// Processing is an emulated service-time distribution.
type Processing struct {
	Kind string // "", "fixed", "exp", "uniform"
	Mean time.Duration
	Min  time.Duration // uniform only
	Max  time.Duration // uniform only
}

// String renders the form ParseProcessing reads.
func (p Processing) String() string {
	switch p.Kind {
	case "fixed":
		return "fixed:" + p.Mean.String()
	case "exp":
		return "exp:" + p.Mean.String()
	case "uniform":
		return "uniform:" + p.Min.String() + "-" + p.Max.String()
	}
	return ""
}

// MeanTime is the distribution's mean.
func (p Processing) MeanTime() time.Duration {
	if p.Kind == "uniform" {
		return (p.Min + p.Max) / 2
	}
	return p.Mean
}

// ParseProcessing reads "4ms" (fixed), "fixed:4ms", "exp:4ms" or
// "uniform:3ms-5ms"; "" or "0" means no emulated processing.
func ParseProcessing(s string) (Processing, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Processing{}, nil
	}
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		kind, val = "fixed", s
	}
	switch kind {
	case "fixed", "exp":
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return Processing{}, fmt.Errorf("invalid processing time %q: want a non-negative duration like \"4ms\"", s)
		}
		return Processing{Kind: kind, Mean: d}, nil
	case "uniform":
		lo, hi, ok := strings.Cut(val, "-")
		a, err1 := time.ParseDuration(lo)
		b, err2 := time.ParseDuration(hi)
		if !ok || err1 != nil || err2 != nil || a < 0 || b < a {
			return Processing{}, fmt.Errorf("invalid processing time %q: want \"uniform:3ms-5ms\" with min ≤ max", s)
		}
		return Processing{Kind: kind, Min: a, Max: b}, nil
	}
	return Processing{}, fmt.Errorf("invalid processing time %q: kind must be fixed, exp or uniform", s)
}

// The subset of serving.knative.dev/v1 Service kantai reads. Decoding is
// strict, so any other field is an error that names it. Fields that are
// accepted but have no effect in the embedded fleet are kept as raw JSON.
type service struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Template struct {
			Metadata objectMeta   `json:"metadata"`
			Spec     revisionSpec `json:"spec"`
		} `json:"template"`
		Traffic []trafficTarget `json:"traffic,omitempty"`
	} `json:"spec"`
	Status json.RawMessage `json:"status,omitempty"`
}

type trafficTarget struct {
	LatestRevision *bool           `json:"latestRevision,omitempty"`
	RevisionName   string          `json:"revisionName,omitempty"`
	Percent        *int64          `json:"percent,omitempty"`
	Tag            string          `json:"tag,omitempty"`
	URL            json.RawMessage `json:"url,omitempty"`
}

type objectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	UID               json.RawMessage   `json:"uid,omitempty"`
	ResourceVersion   json.RawMessage   `json:"resourceVersion,omitempty"`
	Generation        json.RawMessage   `json:"generation,omitempty"`
	CreationTimestamp json.RawMessage   `json:"creationTimestamp,omitempty"`
	ManagedFields     json.RawMessage   `json:"managedFields,omitempty"`
}

type revisionSpec struct {
	ContainerConcurrency *int64          `json:"containerConcurrency,omitempty"`
	TimeoutSeconds       *int64          `json:"timeoutSeconds,omitempty"`
	ResponseStartTimeout *int64          `json:"responseStartTimeoutSeconds,omitempty"`
	IdleTimeout          json.RawMessage `json:"idleTimeoutSeconds,omitempty"`
	Containers           []container     `json:"containers"`
	Affinity             *struct {
		NodeAffinity *struct {
			Required *struct {
				NodeSelectorTerms []struct {
					MatchExpressions []struct {
						Key      string   `json:"key"`
						Operator string   `json:"operator"`
						Values   []string `json:"values"`
					} `json:"matchExpressions"`
				} `json:"nodeSelectorTerms"`
			} `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
		} `json:"nodeAffinity,omitempty"`
	} `json:"affinity,omitempty"`
	NodeSelector                  map[string]string `json:"nodeSelector,omitempty"`
	ServiceAccountName            json.RawMessage   `json:"serviceAccountName,omitempty"`
	EnableServiceLinks            json.RawMessage   `json:"enableServiceLinks,omitempty"`
	ImagePullSecrets              json.RawMessage   `json:"imagePullSecrets,omitempty"`
	Tolerations                   json.RawMessage   `json:"tolerations,omitempty"`
	SecurityContext               json.RawMessage   `json:"securityContext,omitempty"`
	TerminationGracePeriodSeconds json.RawMessage   `json:"terminationGracePeriodSeconds,omitempty"`
}

type container struct {
	Name            string          `json:"name,omitempty"`
	Image           string          `json:"image"`
	Command         []string        `json:"command,omitempty"`
	Args            []string        `json:"args,omitempty"`
	WorkingDir      json.RawMessage `json:"workingDir,omitempty"`
	Env             []envVar        `json:"env,omitempty"`
	Ports           []port          `json:"ports,omitempty"`
	Resources       json.RawMessage `json:"resources,omitempty"`
	ImagePullPolicy json.RawMessage `json:"imagePullPolicy,omitempty"`
	SecurityContext json.RawMessage `json:"securityContext,omitempty"`
	LivenessProbe   json.RawMessage `json:"livenessProbe,omitempty"`
	ReadinessProbe  *struct {
		HTTPGet *struct {
			Path   string          `json:"path,omitempty"`
			Port   json.RawMessage `json:"port,omitempty"`
			Scheme json.RawMessage `json:"scheme,omitempty"`
		} `json:"httpGet,omitempty"`
		TCPSocket           json.RawMessage `json:"tcpSocket,omitempty"`
		PeriodSeconds       json.RawMessage `json:"periodSeconds,omitempty"`
		InitialDelaySeconds json.RawMessage `json:"initialDelaySeconds,omitempty"`
		TimeoutSeconds      json.RawMessage `json:"timeoutSeconds,omitempty"`
		SuccessThreshold    json.RawMessage `json:"successThreshold,omitempty"`
		FailureThreshold    json.RawMessage `json:"failureThreshold,omitempty"`
	} `json:"readinessProbe,omitempty"`
	TerminationMessagePolicy json.RawMessage `json:"terminationMessagePolicy,omitempty"`
}

type envVar struct {
	Name      string          `json:"name"`
	Value     string          `json:"value,omitempty"`
	ValueFrom json.RawMessage `json:"valueFrom,omitempty"`
}

type port struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
}

const defaultPort = 8080

var dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// LoadFile reads every Service in a (possibly multi-document) YAML file.
func LoadFile(path string) ([]*Function, error) {
	data, err := readFileLimited(path)
	if err != nil {
		return nil, err
	}
	fns, err := ParseAll(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return fns, nil
}

// ParseAll reads every document of a multi-document YAML stream, as
// kubectl does: Services, and Lists of them (kind List or ServiceList).
func ParseAll(data []byte) ([]*Function, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	var out []*Function
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		fns, err := parseDocument(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, fns...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Service found")
	}
	return out, nil
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if isSeparator(line) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// isSeparator reports a YAML document marker line: "---", alone or
// followed by a comment.
func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if len(rest) < len(line)-3 && len(rest) > 0 && rest[0] == '#' {
		return true // "--- # comment"
	}
	return len(bytes.TrimRight(rest, "\r\n")) == 0
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
		}
	}
	return out
}

// Parse reads one Service manifest.
func Parse(data []byte) (*Function, error) {
	var svc service
	if err := yaml.UnmarshalStrict(data, &svc); err != nil {
		return nil, fmt.Errorf("not a Service kantai supports: %w", err)
	}
	if svc.APIVersion != "serving.knative.dev/v1" {
		return nil, fmt.Errorf("apiVersion: want serving.knative.dev/v1, got %q", svc.APIVersion)
	}
	if svc.Kind != "Service" {
		return nil, fmt.Errorf("kind: want Service, got %q", svc.Kind)
	}
	f := &Function{Name: svc.Metadata.Name, Namespace: svc.Metadata.Namespace, Port: defaultPort}
	if f.Namespace == "" {
		f.Namespace = "default"
	}
	if !dnsLabel.MatchString(f.Name) || len(f.Name) > 63 {
		return nil, fmt.Errorf("metadata.name: %q is not a valid name (a DNS label: lower-case letters, digits, '-')", f.Name)
	}
	if !dnsLabel.MatchString(f.Namespace) || len(f.Namespace) > 63 {
		return nil, fmt.Errorf("metadata.namespace: %q is not a valid namespace", f.Namespace)
	}
	traffic, err := readTraffic(svc.Spec.Traffic)
	if err != nil {
		return nil, err
	}
	f.Traffic = traffic
	if n := svc.Spec.Template.Metadata.Name; n != "" {
		if !strings.HasPrefix(n, f.Name+"-") || !dnsLabel.MatchString(n) || len(n) > 63 {
			return nil, fmt.Errorf("spec.template.metadata.name: %q must be %q followed by a DNS label suffix", n, f.Name+"-")
		}
		f.RevisionName = n
	}
	rs := svc.Spec.Template.Spec
	if len(rs.Containers) != 1 {
		return nil, fmt.Errorf("spec.template.spec.containers: exactly one container is supported, got %d", len(rs.Containers))
	}
	c := rs.Containers[0]
	if c.Image == "" {
		return nil, fmt.Errorf("spec.template.spec.containers[0].image: required")
	}
	f.Image = c.Image
	// A replica runs the command the testbed maps to its image, or the
	// built-in function; an entrypoint from the manifest would be ignored.
	if len(c.Command) > 0 {
		return nil, fmt.Errorf("spec.template.spec.containers[0].command: not supported: a replica runs the command the testbed's images map gives its image (or the built-in function)")
	}
	if len(c.Args) > 0 {
		return nil, fmt.Errorf("spec.template.spec.containers[0].args: not supported: a replica runs the command the testbed's images map gives its image (or the built-in function)")
	}
	seenEnv := map[string]bool{}
	for i, e := range c.Env {
		if e.Name == "" {
			return nil, fmt.Errorf("spec.template.spec.containers[0].env[%d].name: required", i)
		}
		if len(e.ValueFrom) > 0 {
			return nil, fmt.Errorf("spec.template.spec.containers[0].env[%d].valueFrom: only literal values are supported", i)
		}
		if seenEnv[e.Name] {
			return nil, fmt.Errorf("spec.template.spec.containers[0].env[%d].name: %q is set twice", i, e.Name)
		}
		seenEnv[e.Name] = true
		f.Env = append(f.Env, EnvVar{Name: e.Name, Value: e.Value})
	}
	if len(c.Ports) > 1 {
		return nil, fmt.Errorf("spec.template.spec.containers[0].ports: at most one port, got %d", len(c.Ports))
	}
	if len(c.Ports) == 1 {
		p := c.Ports[0]
		if p.Name == "h2c" {
			return nil, fmt.Errorf("spec.template.spec.containers[0].ports[0].name: h2c (HTTP/2 cleartext) is not supported, only HTTP/1.1")
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("spec.template.spec.containers[0].ports[0].containerPort: %d is not a port number", p.ContainerPort)
		}
		f.Port = p.ContainerPort
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil {
		f.ReadinessPath = c.ReadinessProbe.HTTPGet.Path
		if f.ReadinessPath == "" {
			f.ReadinessPath = "/"
		}
	}
	if rs.ContainerConcurrency != nil {
		if *rs.ContainerConcurrency < 0 || *rs.ContainerConcurrency > 1000 {
			return nil, fmt.Errorf("spec.template.spec.containerConcurrency: must be 0–1000, got %d", *rs.ContainerConcurrency)
		}
		f.ContainerConcurrency = int(*rs.ContainerConcurrency)
	}
	if rs.TimeoutSeconds != nil {
		if *rs.TimeoutSeconds <= 0 || *rs.TimeoutSeconds > 3600 {
			return nil, fmt.Errorf("spec.template.spec.timeoutSeconds: must be 1–3600, got %d", *rs.TimeoutSeconds)
		}
		f.Timeout = time.Duration(*rs.TimeoutSeconds) * time.Second
	}
	if rs.ResponseStartTimeout != nil {
		if *rs.ResponseStartTimeout <= 0 || *rs.ResponseStartTimeout > 3600 {
			return nil, fmt.Errorf("spec.template.spec.responseStartTimeoutSeconds: must be 1–3600, got %d", *rs.ResponseStartTimeout)
		}
		f.ResponseStartTimeout = time.Duration(*rs.ResponseStartTimeout) * time.Second
		if f.Timeout > 0 && f.ResponseStartTimeout > f.Timeout {
			return nil, fmt.Errorf("spec.template.spec.responseStartTimeoutSeconds: %d exceeds timeoutSeconds %d", *rs.ResponseStartTimeout, *rs.TimeoutSeconds)
		}
	}
	nodes, err := placementNodes(rs)
	if err != nil {
		return nil, err
	}
	f.Nodes = nodes

	ann := map[string]string{}
	for k, v := range svc.Metadata.Annotations {
		ann[k] = v
	}
	for k, v := range svc.Spec.Template.Metadata.Annotations { // the revision's win
		ann[k] = v
	}
	f.Annotations = ann
	if err := f.readAnnotations(ann); err != nil {
		return nil, err
	}
	spec, warns, err := autoscale.FromAnnotations(ann, f.ContainerConcurrency, LocalSettings())
	if err != nil {
		return nil, err
	}
	f.Scaling = spec
	for _, w := range warns {
		f.Warnings = append(f.Warnings, w.String())
	}
	return f, nil
}

func placementNodes(rs revisionSpec) ([]string, error) {
	var nodes []string
	for k, v := range rs.NodeSelector {
		if k != "kubernetes.io/hostname" {
			return nil, fmt.Errorf("spec.template.spec.nodeSelector: only kubernetes.io/hostname is supported, got %q", k)
		}
		nodes = append(nodes, v)
	}
	if rs.Affinity == nil || rs.Affinity.NodeAffinity == nil || rs.Affinity.NodeAffinity.Required == nil {
		return nodes, nil
	}
	terms := rs.Affinity.NodeAffinity.Required.NodeSelectorTerms
	const path = "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
	if len(terms) != 1 {
		return nil, fmt.Errorf("%s.nodeSelectorTerms: exactly one term is supported, got %d", path, len(terms))
	}
	for i, e := range terms[0].MatchExpressions {
		if e.Key != "kubernetes.io/hostname" || e.Operator != "In" {
			return nil, fmt.Errorf("%s.nodeSelectorTerms[0].matchExpressions[%d]: only key kubernetes.io/hostname with operator In is supported", path, i)
		}
		if nodes != nil {
			nodes = intersect(nodes, e.Values)
		} else {
			nodes = append([]string(nil), e.Values...)
		}
	}
	sort.Strings(nodes)
	return nodes, nil
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	out := []string{}
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// readAnnotations reads kantai's own annotations; an unknown key under
// kantai.dev/ is an error, as a misspelt key would silently do nothing.
func (f *Function) readAnnotations(ann map[string]string) error {
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	sort.Strings(keys) // first error is stable
	for _, k := range keys {
		v := ann[k]
		var err error
		switch k {
		case AnnProcessing:
			f.Processing, err = ParseProcessing(v)
		case AnnWorkers:
			var n *int
			n, err = count(v)
			if err == nil && *n < 1 {
				err = fmt.Errorf("must be at least 1")
			}
			if err == nil {
				f.Workers = *n
			}
		default:
			if strings.HasPrefix(k, "kantai.dev/") {
				return fmt.Errorf("annotations[%q]: not supported by kantai", k)
			}
		}
		if err != nil {
			return fmt.Errorf("annotations[%q]: invalid value %q: %v", k, v, err)
		}
	}
	return nil
}

func count(v string) (*int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("not an integer")
	}
	if n < 0 {
		return nil, fmt.Errorf("must not be negative")
	}
	return &n, nil
}

// readTraffic checks spec.traffic as Knative's validation does: each
// entry names a revision or follows the latest one, percents add up to
// 100, tags are unique DNS labels.
func readTraffic(in []trafficTarget) ([]Traffic, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]Traffic, 0, len(in))
	total := int64(0)
	tags := map[string]bool{}
	for i, t := range in {
		path := fmt.Sprintf("spec.traffic[%d]", i)
		latest := t.LatestRevision != nil && *t.LatestRevision
		switch {
		case latest && t.RevisionName != "":
			return nil, fmt.Errorf("%s: revisionName and latestRevision: true are mutually exclusive", path)
		case !latest && t.RevisionName == "" && t.LatestRevision != nil:
			return nil, fmt.Errorf("%s.revisionName: required with latestRevision: false", path)
		case t.RevisionName == "":
			latest = true // Knative's default when neither is given
		}
		if t.RevisionName != "" && (!dnsLabel.MatchString(t.RevisionName) || len(t.RevisionName) > 63) {
			return nil, fmt.Errorf("%s.revisionName: %q is not a valid name", path, t.RevisionName)
		}
		pct := int64(0)
		if t.Percent != nil {
			pct = *t.Percent
		}
		if pct < 0 || pct > 100 {
			return nil, fmt.Errorf("%s.percent: must be 0–100, got %d", path, pct)
		}
		total += pct
		if t.Tag != "" {
			if !dnsLabel.MatchString(t.Tag) || len(t.Tag) > 63 {
				return nil, fmt.Errorf("%s.tag: %q is not a DNS label", path, t.Tag)
			}
			if tags[t.Tag] {
				return nil, fmt.Errorf("%s.tag: %q is used twice", path, t.Tag)
			}
			tags[t.Tag] = true
		}
		if len(t.URL) > 0 {
			return nil, fmt.Errorf("%s.url: is set by the platform, not by users", path)
		}
		out = append(out, Traffic{RevisionName: t.RevisionName, LatestRevision: latest, Percent: int(pct), Tag: t.Tag})
	}
	if total != 100 {
		return nil, fmt.Errorf("spec.traffic: percents add up to %d, want 100", total)
	}
	return out, nil
}

// SameTemplate reports whether g would run the same revision as f: every
// field but the traffic block and the warnings is equal.
func (f *Function) SameTemplate(g *Function) bool {
	a, b := *f, *g
	a.Traffic, b.Traffic, a.Warnings, b.Warnings = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}
