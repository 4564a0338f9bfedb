package main

import (
	"fmt"
	"syscall"
)

// reboot syncs the file systems and restarts or powers off the machine
// with reboot(2).
func reboot(action string) error {
	cmd := syscall.LINUX_REBOOT_CMD_POWER_OFF
	if action == afterReboot {
		cmd = syscall.LINUX_REBOOT_CMD_RESTART
	}
	syscall.Sync()
	if err := syscall.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(2) %s: %w", action, err)
	}
	return nil
}
