//go:build !linux

package linkemu

// newSysTimer has no precise timer to offer here: alarms are Go timers.
func newSysTimer() sysTimer { return nil }
