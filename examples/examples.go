// Package examples holds the manifests shipped with kantai, embedded so the
// demo runs from any directory.
package examples

import _ "embed"

// Hello is hello.yaml: the seed's walkthrough function (window 12s,
// target 10, TARGET=Konnichiwa).
//
//go:embed hello.yaml
var Hello []byte
