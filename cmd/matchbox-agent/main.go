// Command matchbox-agent is the discovery agent: it runs in matchbox's
// discovery initramfs, collects the machine's hardware inventory from /proc
// and /sys, reports it to matchbox and then reboots or powers off.
//
// Settings come from flags or, for those not given as flags, from the
// kernel command line (PROC/cmdline under --root):
//
//	--url URL          matchbox.url=URL      matchbox base URL
//	--machine-id ID    matchbox.id=ID        machine ID to report as
//	--token TOKEN      matchbox.token=TOKEN  bearer token for the report
//	--after ACTION     matchbox.after=ACTION reboot, poweroff or none
//	--print            matchbox.print=1      print the inventory JSON to stdout
//	--root DIR                               read /proc and /sys under DIR
//
// With a URL it POSTs the inventory to {url}/api/v1/machines/{id}/inventory
// with "Authorization: Bearer {token}", retrying network errors and 408,
// 429 and 5xx answers with exponential backoff. Then it runs the after
// action, whether the report succeeded or not (a reboot retries discovery).
// The action defaults to none, or to poweroff when the agent runs as PID 1;
// reboot and poweroff sync the file systems and call reboot(2).
//
// Exit codes: 0 success, 2 bad usage, 3 inventory not collected, 4 report
// refused by matchbox (a 4xx answer such as 401), 5 report failed after
// all retries, 6 the after action failed.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &agent{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		client:   &http.Client{Timeout: 30 * time.Second},
		attempts: 6,
		backoff:  time.Second,
		reboot:   reboot,
		pid:      os.Getpid(),
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	if code != exitOK {
		slog.New(slog.NewTextHandler(os.Stderr, nil)).Error("matchbox-agent failed", "exit", code)
	}
	os.Exit(code)
}
