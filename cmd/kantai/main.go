// Command kantai runs and drives a latency-aware serverless fleet.
package main

import (
	"os"

	"kantai.dev/kantai/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
