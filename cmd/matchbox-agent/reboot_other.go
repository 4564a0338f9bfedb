//go:build !linux

package main

import "fmt"

// reboot is only implemented on Linux, where the agent runs.
func reboot(action string) error {
	return fmt.Errorf("%s: not supported on this operating system", action)
}
