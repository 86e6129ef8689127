package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesWithoutToken: the daemon does not start without a token
// for its node API.
func TestRunRefusesWithoutToken(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no token file", []string{"--node=a"}, "--token-file is required"},
		{"missing file", []string{"--node=a", "--token-file=" + filepath.Join(t.TempDir(), "nope")}, "no such file"},
		{"empty file", []string{"--node=a", "--token-file=" + empty}, "is empty"},
		{"stray argument", []string{"--node=a", "serve"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}
