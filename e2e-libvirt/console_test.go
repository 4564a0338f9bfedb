package e2elibvirt

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// waitConsole follows a VM's serial log from offset until it holds one of
// want, and returns which and when it was seen. It fails when one of bad
// comes first, when ctx ends, or when the VM has been off for longer than
// offGrace without printing it (a VM may be off a moment between two
// boots, as when its BMC cycles it).
func waitConsole(ctx context.Context, m machine, path string, offset int64, want, bad []string, offGrace time.Duration) (string, time.Time, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var offSince, lastProbe time.Time
	lastChance := false
	for {
		b, _ := os.ReadFile(path)
		if int64(len(b)) > offset {
			text := strings.ReplaceAll(string(b[offset:]), "\r", "")
			first, firstAt := "", -1
			for _, w := range want {
				if i := strings.Index(text, w); i >= 0 && (firstAt < 0 || i < firstAt) {
					first, firstAt = w, i
				}
			}
			for _, f := range bad {
				if i := strings.Index(text, f); i >= 0 && (firstAt < 0 || i < firstAt) {
					return "", time.Time{}, fmt.Errorf("%q in %s before any of %q", f, path, want)
				}
			}
			if firstAt >= 0 {
				return first, time.Now(), nil
			}
		}
		if lastChance {
			return "", time.Time{}, fmt.Errorf("VM off for %s without printing any of %q to %s", offGrace, want, path)
		}
		if time.Since(lastProbe) >= time.Second {
			lastProbe = time.Now()
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			on, err := m.PoweredOn(pctx)
			cancel()
			switch {
			case err != nil || on:
				offSince = time.Time{}
			case offSince.IsZero():
				offSince = time.Now()
			}
			if !offSince.IsZero() && time.Since(offSince) >= offGrace {
				// Read once more: the last lines may have landed
				// just before the VM stopped.
				lastChance = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("none of %q in %s: %w", want, path, ctx.Err())
		case <-tick.C:
		}
	}
}
