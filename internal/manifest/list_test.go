package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var svc = strings.Replace(base, "ANN", `kantai.dev/workers: "1"`, 1)

// indent shifts a document right, to sit under items:.
func indent(doc, by string) string {
	lines := strings.Split(strings.TrimRight(doc, "\n"), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func item(doc string) string {
	return "- " + strings.TrimPrefix(indent(doc, "  "), "  ")
}

func TestParseAll_lists(t *testing.T) {
	fn2 := strings.Replace(svc, "name: fn", "name: fn2", 1)
	tests := []struct {
		name, stream string
		want         []string
	}{
		{"kind List", "apiVersion: v1\nkind: List\nitems:\n" + item(svc) + item(fn2), []string{"fn", "fn2"}},
		{"ServiceList", "apiVersion: serving.knative.dev/v1\nkind: ServiceList\nmetadata: {}\nitems:\n" + item(svc), []string{"fn"}},
		{"List then Service", "apiVersion: v1\nkind: List\nitems:\n" + item(svc) + "---\n" + fn2, []string{"fn", "fn2"}},
		{"empty List", "apiVersion: v1\nkind: List\nitems: []\n---\n" + svc, []string{"fn"}},
		{"separator with a comment", svc + "--- # the second\n" + fn2, []string{"fn", "fn2"}},
		{"CRLF separators", strings.ReplaceAll(svc+"---\n"+fn2, "\n", "\r\n"), []string{"fn", "fn2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fns, err := ParseAll([]byte(tt.stream))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fns {
				got = append(got, f.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseAll_rejects(t *testing.T) {
	tests := []struct {
		name, stream, want string
	}{
		{"List item names its index", "apiVersion: v1\nkind: List\nitems:\n" + item(svc) + item(strings.Replace(svc, "name: fn", "name: Bad_Name", 1)), "document 1: items[1]: metadata.name"},
		{"List of the wrong version", "apiVersion: v2\nkind: List\nitems: []\n", "apiVersion"},
		{"List with an unknown field", "apiVersion: v1\nkind: List\nextra: 1\nitems: []\n", "extra"},
		{"List inside a List", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n", "items[0].kind: a List inside a List"},
		{"null item", "apiVersion: v1\nkind: List\nitems:\n- null\n", "items[0]: empty"},
		{"second document", svc + "---\n" + strings.Replace(svc, "kind: Service", "kind: Deployment", 1), "document 2: kind"},
		{"command", strings.Replace(svc, "- image: example/fn", "- image: example/fn\n        command: [/bin/sh]", 1), "containers[0].command: not supported"},
		{"args", strings.Replace(svc, "- image: example/fn", "- image: example/fn\n        args: [-x]", 1), "containers[0].args: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAll([]byte(tt.stream))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestParseAll_sizeCap(t *testing.T) {
	big := svc + "# " + strings.Repeat("x", MaxFileSize) + "\n"
	if _, err := ParseAll([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ParseAll of %d bytes: %v, want ErrTooLarge", len(big), err)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.yaml") {
		t.Errorf("LoadFile of %d bytes: %v, want ErrTooLarge naming the file", len(big), err)
	}
	if _, err := ReadLimited(strings.NewReader(svc)); err != nil {
		t.Errorf("ReadLimited of a small manifest: %v", err)
	}
}
