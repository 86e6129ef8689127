package cli

import "testing"

func TestOptionalEnds(t *testing.T) {
	for _, c := range []struct {
		args    []string
		a, b    string
		wantErr bool
	}{
		{args: nil},
		{args: []string{"node1", "node2"}, a: "node1", b: "node2"},
		{args: []string{"node1"}, wantErr: true},
	} {
		a, b, err := optionalEnds(c.args)
		if (err != nil) != c.wantErr || a != c.a || b != c.b {
			t.Errorf("optionalEnds(%q) = %q, %q, %v", c.args, a, b, err)
		}
	}
}
