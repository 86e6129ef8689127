package proxybench

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal ends a server when the process that started it dies
// without stopping it.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
