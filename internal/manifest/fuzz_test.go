package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParseAll feeds the manifest reader arbitrary streams. It must never
// panic or hang, must refuse streams over MaxFileSize, and whatever it
// accepts must be a function kantai can run: a valid name and namespace,
// an image, a port, no negative limits. Seeds: the shipped examples and
// the cases from the hardening issue (kind: List, multi-document streams,
// command:, numbers that overflow or are NaN).
func FuzzParseAll(f *testing.F) {
	for _, path := range []string{"../../examples/hello.yaml", "testdata/seed-hello.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	fn2 := strings.Replace(svc, "name: fn", "name: fn2", 1)
	ann := func(a string) string { return strings.Replace(base, "ANN", a, 1) }
	for _, s := range []string{
		svc,
		svc + "---\n" + fn2,
		"apiVersion: v1\nkind: List\nitems:\n" + item(svc) + item(fn2),
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n",
		strings.Replace(svc, "- image: example/fn", "- image: example/fn\n        command: [sh, -c, python3 app.py]", 1),
		ann(`autoscaling.knative.dev/window: "36028797018963980"`),
		ann(`autoscaling.knative.dev/window: "9223372036854775807s"`),
		ann(`autoscaling.knative.dev/target-burst-capacity: "NaN"`),
		ann(`autoscaling.knative.dev/target: "+Inf"`),
		ann(`autoscaling.knative.dev/min-scale: "99999999999999999999"`),
		ann(`kantai.dev/processing-time: "uniform:5ms-3ms"`),
		svc + "        env:\n        - name: LD_PRELOAD\n          value: /tmp/evil.so\n",
		"{}", "[]", "null", "---\n---\n", "apiVersion: v1\nkind: List\nitems: {}\n",
		"a: &a [*a]\n", // a recursive alias
		"x: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fns, err := ParseAll(data)
		if len(data) > MaxFileSize {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d bytes: %v, want ErrTooLarge", len(data), err)
			}
			return
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if len(fns) == 0 {
			t.Fatal("no error and no function")
		}
		for _, fn := range fns {
			if !dnsLabel.MatchString(fn.Name) || !dnsLabel.MatchString(fn.Namespace) {
				t.Fatalf("accepted name %q namespace %q", fn.Name, fn.Namespace)
			}
			if fn.Image == "" || fn.Port < 1 || fn.Port > 65535 {
				t.Fatalf("accepted image %q port %d", fn.Image, fn.Port)
			}
			if fn.ContainerConcurrency < 0 || fn.Timeout < 0 || fn.Workers < 0 {
				t.Fatalf("accepted negative limits: %+v", fn)
			}
			if err := fn.Scaling.Validate(); err != nil {
				t.Fatalf("accepted an autoscaling spec out of bounds: %v", err)
			}
		}
	})
}
