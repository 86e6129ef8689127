package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds a manifest file or stream (1 MiB, as the Kubernetes
// API server bounds a request body of YAML objects at 3 MiB; a Service is a
// few hundred bytes).
const MaxFileSize = 1 << 20

// ErrTooLarge means a manifest exceeds MaxFileSize.
var ErrTooLarge = fmt.Errorf("larger than %d bytes (1 MiB)", MaxFileSize)

// ReadLimited reads a whole manifest from r, failing with ErrTooLarge
// beyond MaxFileSize rather than reading on.
func ReadLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	return data, nil
}

func readFileLimited(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	defer fh.Close()
	data, err := ReadLimited(fh)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", path, err)
	}
	return data, nil
}

// list is kubectl's List: any kind of object under items. kantai takes
// "List" (v1) and "ServiceList" (serving.knative.dev/v1).
type list struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   json.RawMessage   `json:"metadata,omitempty"`
	Items      []json.RawMessage `json:"items"`
}

// parseDocument reads one YAML document: a Service, or a List of them.
func parseDocument(doc []byte) ([]*Function, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	// Only the kind decides; a document that cannot even say that is
	// reported by Parse, which names the field.
	if err := yaml.Unmarshal(doc, &head); err != nil || (head.Kind != "List" && head.Kind != "ServiceList") {
		f, err := Parse(doc)
		if err != nil {
			return nil, err
		}
		return []*Function{f}, nil
	}
	var l list
	if err := yaml.UnmarshalStrict(doc, &l); err != nil {
		return nil, fmt.Errorf("not a List kantai supports: %w", err)
	}
	switch {
	case l.Kind == "List" && l.APIVersion != "v1":
		return nil, fmt.Errorf("apiVersion: a List is v1, got %q", l.APIVersion)
	case l.Kind == "ServiceList" && l.APIVersion != "serving.knative.dev/v1":
		return nil, fmt.Errorf("apiVersion: a ServiceList is serving.knative.dev/v1, got %q", l.APIVersion)
	}
	var out []*Function
	for i, item := range l.Items {
		if len(bytes.TrimSpace(item)) == 0 || bytes.Equal(bytes.TrimSpace(item), []byte("null")) {
			return nil, fmt.Errorf("items[%d]: empty", i)
		}
		var inner struct {
			Kind string `json:"kind"`
		}
		if json.Unmarshal(item, &inner) == nil && (inner.Kind == "List" || inner.Kind == "ServiceList") {
			return nil, fmt.Errorf("items[%d].kind: a List inside a List is not supported", i)
		}
		f, err := Parse(item)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		out = append(out, f)
	}
	return out, nil
}
