package manifest

import (
	"strings"
	"testing"
	"time"
)

func TestLoadFile_examples(t *testing.T) {
	for _, path := range []string{"../../examples/hello.yaml", "testdata/seed-hello.yaml"} {
		fns, err := LoadFile(path)
		if err != nil {
			t.Fatalf("LoadFile(%s): %v", path, err)
		}
		if len(fns) != 1 {
			t.Fatalf("LoadFile(%s) = %d functions, want 1", path, len(fns))
		}
		f := fns[0]
		if got, want := f.Key(), "default/hello"; got != want {
			t.Errorf("%s: key = %q, want %q", path, got, want)
		}
		if got, want := f.Scaling.Window, 12*time.Second; got != want {
			t.Errorf("%s: window = %v, want %v", path, got, want)
		}
		if got, want := f.Scaling.Target, 10.0; got != want {
			t.Errorf("%s: target = %v, want %v", path, got, want)
		}
		if len(f.Env) != 1 || f.Env[0] != (EnvVar{"TARGET", "Konnichiwa"}) {
			t.Errorf("%s: env = %v, want TARGET=Konnichiwa", path, f.Env)
		}
		if f.Port != 8080 {
			t.Errorf("%s: port = %d, want 8080", path, f.Port)
		}
	}
	fns, _ := LoadFile("testdata/seed-hello.yaml")
	if got := strings.Join(fns[0].Nodes, ","); got != "node1,node2,node3" {
		t.Errorf("nodes from affinity = %q, want node1,node2,node3", got)
	}
	if fns[0].Scaling.MinScale != 3 || fns[0].Scaling.MaxScale != 3 {
		t.Errorf("min/max scale = %d/%d, want 3/3", fns[0].Scaling.MinScale, fns[0].Scaling.MaxScale)
	}
}

const base = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: fn
spec:
  template:
    metadata:
      annotations:
        ANN
    spec:
      containerConcurrency: 4
      containers:
      - image: example/fn
`

func TestParse_annotations(t *testing.T) {
	f, err := Parse([]byte(strings.Replace(base, "ANN", `kantai.dev/processing-time: "uniform:3ms-5ms"
        kantai.dev/workers: "8"
        autoscaling.knative.dev/minScale: "1"
        autoscaling.knative.dev/initial-scale: "0"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Namespace != "default" || f.ContainerConcurrency != 4 || f.Workers != 8 {
		t.Errorf("got ns=%q cc=%d workers=%d", f.Namespace, f.ContainerConcurrency, f.Workers)
	}
	if got, want := f.Processing.String(), "uniform:3ms-5ms"; got != want {
		t.Errorf("processing = %q, want %q", got, want)
	}
	if f.Scaling.MinScale != 1 || f.Scaling.InitialScale != 0 {
		t.Errorf("min=%d initial=%d, want 1 and 0", f.Scaling.MinScale, f.Scaling.InitialScale)
	}
	if got, want := f.Scaling.Target, 4*0.7; got != want {
		t.Errorf("target = %v, want %v (70%% of containerConcurrency)", got, want)
	}
}

func TestParse_rejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"wrong kind", strings.Replace(base, "kind: Service", "kind: Deployment", 1), "kind"},
		{"wrong api", strings.Replace(base, "serving.knative.dev/v1", "apps/v1", 1), "apiVersion"},
		{"bad name", strings.Replace(base, "name: fn", "name: Fn_1", 1), "metadata.name"},
		{"unknown field", strings.Replace(base, "containerConcurrency: 4", "volumes: []", 1), "volumes"},
		{"two containers", base + "      - image: other\n", "exactly one container"},
		{"negative cc", strings.Replace(base, "containerConcurrency: 4", "containerConcurrency: -1", 1), "containerConcurrency"},
		{"window too short", strings.Replace(base, "ANN", `autoscaling.knative.dev/window: "1s"`, 1), "autoscaling.knative.dev/window"},
		{"bad target", strings.Replace(base, "ANN", `autoscaling.knative.dev/target: "lots"`, 1), "autoscaling.knative.dev/target"},
		{"rps metric", strings.Replace(base, "ANN", `autoscaling.knative.dev/metric: "rps"`, 1), "concurrency metric"},
		{"hpa class", strings.Replace(base, "ANN", `autoscaling.knative.dev/class: "hpa.autoscaling.knative.dev"`, 1), "class"},
		{"unknown annotation", strings.Replace(base, "ANN", `autoscaling.knative.dev/frobnicate: "1"`, 1), "not supported"},
		{"min above max", strings.Replace(base, "ANN", "autoscaling.knative.dev/min-scale: \"4\"\n        autoscaling.knative.dev/max-scale: \"2\"", 1), "must not exceed"},
		{"NaN burst capacity", strings.Replace(base, "ANN", `autoscaling.knative.dev/target-burst-capacity: "NaN"`, 1), "target-burst-capacity"},
		{"window overflow", strings.Replace(base, "ANN", `autoscaling.knative.dev/window: "36028797018963980"`, 1), "autoscaling.knative.dev/window"},
		{"NaN target", strings.Replace(base, "ANN", `autoscaling.knative.dev/target: "NaN"`, 1), "autoscaling.knative.dev/target"},
		{"traffic sum", base + "  traffic:\n  - revisionName: fn-00001\n    percent: 50\n", "add up to 50"},
		{"traffic both", base + "  traffic:\n  - revisionName: fn-00001\n    latestRevision: true\n    percent: 100\n", "mutually exclusive"},
		{"traffic tag twice", base + "  traffic:\n  - {latestRevision: true, percent: 100, tag: a}\n  - {revisionName: fn-00001, percent: 0, tag: a}\n", "used twice"},
		{"traffic url", base + "  traffic:\n  - {latestRevision: true, percent: 100, url: http://x}\n", "spec.traffic[0].url"},
		{"revision name", strings.Replace(base, "    metadata:\n", "    metadata:\n      name: other-1\n", 1), "spec.template.metadata.name"},
		{"bad processing", strings.Replace(base, "ANN", `kantai.dev/processing-time: "soon"`, 1), "processing-time"},
		{"valueFrom", base + "        env:\n        - name: X\n          valueFrom: {secretKeyRef: {name: s, key: k}}\n", "valueFrom"},
		{"h2c", base + "        ports:\n        - name: h2c\n          containerPort: 8080\n", "h2c"},
		{"other selector", strings.Replace(base, "containerConcurrency: 4", "nodeSelector: {zone: a}", 1), "nodeSelector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(tt.doc, "ANN", "kantai.dev/workers: \"1\"", 1)
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("Parse accepted it, want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestParseAll_multiDocument(t *testing.T) {
	doc := strings.Replace(base, "ANN", "kantai.dev/workers: \"1\"", 1)
	two := "# leading comment\n---\n" + doc + "---\n" + strings.Replace(doc, "name: fn", "name: fn2", 1) + "---\n"
	fns, err := ParseAll([]byte(two))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 2 || fns[1].Name != "fn2" {
		t.Fatalf("got %d functions, want fn and fn2", len(fns))
	}
	if _, err := ParseAll([]byte("# nothing\n")); err == nil {
		t.Error("empty stream accepted")
	}
}

func TestParseProcessing(t *testing.T) {
	tests := []struct {
		in   string
		mean time.Duration
		err  bool
	}{
		{"", 0, false}, {"4ms", 4 * time.Millisecond, false}, {"exp:2ms", 2 * time.Millisecond, false},
		{"uniform:3ms-5ms", 4 * time.Millisecond, false}, {"uniform:5ms-3ms", 0, true}, {"gauss:1ms", 0, true}, {"-1ms", 0, true},
	}
	for _, tt := range tests {
		p, err := ParseProcessing(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseProcessing(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if got := p.MeanTime(); got != tt.mean {
			t.Errorf("ParseProcessing(%q).MeanTime() = %v, want %v", tt.in, got, tt.mean)
		}
	}
}

func TestParse_trafficAndClasses(t *testing.T) {
	doc := strings.Replace(base, "ANN", `autoscaling.knative.dev/class: autoscaling.kantai.dev
        autoscaling.knative.dev/target-burst-capacity: "200"`, 1) +
		"  traffic:\n  - {revisionName: fn-00001, percent: 90}\n  - {latestRevision: true, percent: 10, tag: canary}\n"
	f, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []Traffic{{RevisionName: "fn-00001", Percent: 90}, {LatestRevision: true, Percent: 10, Tag: "canary"}}
	if len(f.Traffic) != 2 || f.Traffic[0] != want[0] || f.Traffic[1] != want[1] {
		t.Errorf("traffic = %+v, want %+v", f.Traffic, want)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "target-burst-capacity") {
		t.Errorf("warnings = %q, want one about target-burst-capacity", f.Warnings)
	}
	kpa, err := Parse([]byte(strings.Replace(base, "ANN", `autoscaling.knative.dev/class: kpa.autoscaling.knative.dev`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if kpa.Traffic != nil || len(kpa.Warnings) != 0 {
		t.Errorf("plain service: traffic %v warnings %v, want none", kpa.Traffic, kpa.Warnings)
	}
	if !kpa.SameTemplate(kpa) || kpa.SameTemplate(f) {
		t.Error("SameTemplate: want equal to itself and different from a Service with other annotations")
	}
	g := *kpa
	g.Traffic = want
	if !kpa.SameTemplate(&g) {
		t.Error("SameTemplate: a traffic change alone must not make a new revision")
	}
}
