package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
)

// readCapped reads a file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes, the most a testbed file may have", path, limit)
	}
	return data, nil
}

// checkValues walks a YAML (or JSON) document along the Go type it will be
// decoded into and reports the first value that cannot be decoded, by its
// path (links[3].bandwidth): the JSON decoder behind sigs.k8s.io/yaml says
// what is wrong with a value but not where, and cannot represent .nan or
// .inf at all. Fields tagged check:"positive" must hold a number above zero.
// Unknown fields and structure are left to the strict decoder.
func checkValues(data []byte, t reflect.Type) error {
	var doc yaml3.Node
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("decoding testbed: %w", err)
	}
	budget := 1 << 20
	return walk(&doc, t, "", "", 0, &budget)
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// walk visits at most *budget nodes: aliases can make a small document
// expand into a huge one.
func walk(n *yaml3.Node, t reflect.Type, path, check string, depth int, budget *int) error {
	if depth > 64 {
		return fmt.Errorf("%s: nested too deeply", strings.TrimPrefix(path, "."))
	}
	if *budget--; *budget < 0 {
		return fmt.Errorf("decoding testbed: too many values (aliases expand to more than %d)", 1<<20)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml3.DocumentNode:
		for _, c := range n.Content {
			if err := walk(c, t, path, check, depth+1, budget); err != nil {
				return err
			}
		}
		return nil
	case yaml3.AliasNode:
		return walk(n.Alias, t, path, check, depth+1, budget)
	case yaml3.ScalarNode:
		return checkScalar(n, t, path, check)
	case yaml3.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return nil
		}
		for i, c := range n.Content {
			if err := walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), "", depth+1, budget); err != nil {
				return err
			}
		}
	case yaml3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch t.Kind() {
			case reflect.Map:
				if err := walk(v, t.Elem(), fmt.Sprintf("%s[%q]", path, k.Value), "", depth+1, budget); err != nil {
					return err
				}
			case reflect.Struct:
				f, ok := fieldByJSONName(t, k.Value)
				if !ok {
					continue
				}
				if err := walk(v, f.Type, path+"."+k.Value, f.Tag.Get("check"), depth+1, budget); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && strings.EqualFold(f.Name, name)) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// checkScalar decodes one scalar into a value of type t the way the real
// decoder will (through JSON) and checks it.
func checkScalar(n *yaml3.Node, t reflect.Type, path, check string) error {
	field := strings.TrimPrefix(path, ".")
	if n.Tag == "!!null" {
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return fmt.Errorf("%s: must be a finite number, got %s", field, n.Value)
	}
	if !reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Slice, reflect.Interface, reflect.String:
			// A shape error the strict decoder words, or a scalar it
			// turns into a string itself.
			return nil
		}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	p := reflect.New(t)
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: want %s, got %s %s", field, kindWord(t), te.Value, n.Value)
		}
		return fmt.Errorf("%s: %w", field, err)
	}
	if check == "positive" {
		switch e := p.Elem(); e.Kind() {
		case reflect.Float32, reflect.Float64:
			if !(e.Float() > 0) {
				return fmt.Errorf("%s: must be positive, got %s (leave it out for the default)", field, n.Value)
			}
		case reflect.Int, reflect.Int64, reflect.Int32:
			if e.Int() <= 0 {
				return fmt.Errorf("%s: must be positive, got %s (leave it out for the default)", field, n.Value)
			}
		}
	}
	return nil
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return t.String()
}
