//go:build !linux

package proxybench

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
