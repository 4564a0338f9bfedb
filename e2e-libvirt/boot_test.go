package e2elibvirt

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/bmc"
)

// Serial-console markers printed by the test OS (os-assets/build-testos).
const (
	markerConfig   = "TESTOS: config fetched"
	markerHostname = "TESTOS: hostname="
	markerDone     = "TESTOS: done reported"
	markerPoweroff = "TESTOS: poweroff"
)

// bootResult is what one network boot of a VM took.
type bootResult struct {
	// Config is the wall time from power-on to the first-boot config
	// fetched; Total from power-on to power-off.
	Config, Total time.Duration
}

// bmcController drives the VMs' BMCs through bmclib, as matchbox does.
var bmcController = bmc.New(bmc.Config{Timeout: 20 * time.Second, Retries: 1, Settle: -1})

// endpoint is how bmclib reaches b.
func (b *vmBMC) endpoint() bmc.Endpoint {
	return bmc.Endpoint{Address: b.Host, Port: b.Port, Driver: bmc.DriverIPMI, Username: b.Username, Password: b.Password, CipherSuite: b.CipherSu}
}

// bootThroughBMC powers m on through its BMC (IPMI over bmclib) and
// follows the boot on the serial console until the test OS has fetched its
// config, set hostname and powered off.
func bootThroughBMC(ctx context.Context, t testing.TB, b *vmBMC, m machine, hostname string) bootResult {
	t.Helper()
	return bootVM(ctx, t, m, hostname, func(ctx context.Context) error {
		if _, err := bmcController.SetBootDevice(ctx, b.endpoint(), bmc.BootOptions{Device: "pxe"}); err != nil {
			return fmt.Errorf("BMC boot device pxe: %w", err)
		}
		if _, err := bmcController.SetPower(ctx, b.endpoint(), bmc.ActionOn); err != nil {
			return fmt.Errorf("BMC power on: %w", err)
		}
		return nil
	})
}

// bootVM runs powerOn and follows the serial console of m (see
// bootThroughBMC). hostname empty skips the host name check.
func bootVM(ctx context.Context, t testing.TB, m machine, hostname string, powerOn func(context.Context) error) bootResult {
	t.Helper()
	spec := m.Spec()
	offset := fileSize(spec.SerialLog)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	start := time.Now()
	if err := powerOn(ctx); err != nil {
		t.Fatalf("VM %s: %v", spec.Name, err)
	}
	off := offCheck(m)
	at, err := waitSerial(ctx, spec.SerialLog, markerConfig, offset, off)
	if err != nil {
		t.Fatalf("VM %s (%s, %s): %v\nlast serial lines:\n%s", spec.Name, spec.Firmware, spec.NIC, err, tail(spec.SerialLog, 25))
	}
	res := bootResult{Config: at.Sub(start)}
	if hostname != "" {
		if _, err := waitSerial(ctx, spec.SerialLog, markerHostname+hostname+"\n", offset, off); err != nil {
			t.Fatalf("VM %s: %v\nlast serial lines:\n%s", spec.Name, err, tail(spec.SerialLog, 25))
		}
	}
	if _, err := waitSerial(ctx, spec.SerialLog, markerDone, offset, off); err != nil {
		t.Fatalf("VM %s: %v\nlast serial lines:\n%s", spec.Name, err, tail(spec.SerialLog, 25))
	}
	if err := m.WaitOff(ctx); err != nil {
		t.Fatalf("VM %s did not power off: %v", spec.Name, err)
	}
	res.Total = time.Since(start)
	t.Logf("VM %s (%s, %s%s): power-on asked at %s, config fetched %.1fs after it, powered off after %.1fs",
		spec.Name, spec.Firmware, spec.NIC, map[bool]string{true: ", firmware PXE", false: ""}[spec.NativePXE],
		start.UTC().Format("15:04:05.000"), res.Config.Seconds(), res.Total.Seconds())
	return res
}

// offCheck returns a cheap "has m powered off" probe for waitSerial: it
// asks the driver at most once a second, and answers true only after two
// answers in a row said off, so that one odd answer of the driver does not
// end a boot that is still running.
func offCheck(m machine) func() bool {
	var last time.Time
	offs := 0
	return func() bool {
		if time.Since(last) < time.Second {
			return false
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		on, err := m.PoweredOn(ctx)
		if err == nil && !on {
			offs++
		} else {
			offs = 0
		}
		return offs >= 2
	}
}

// assertTimeline checks that the machine holding mac has events whose types
// start with each of want, in that order (other events may come between).
func assertTimeline(t testing.TB, s *matchboxServer, mac string, want []string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var evs []event
	var err error
	// Events are written asynchronously: give the recorder a moment.
	for i := 0; i < 20; i++ {
		evs, err = s.Events(ctx, mac)
		if err == nil && missingInOrder(evs, want) == "" {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("timeline of %s: %v (server log %s)", mac, err, s.Log)
	}
	types := make([]string, len(evs))
	for i, e := range evs {
		types[i] = e.Type
	}
	if miss := missingInOrder(evs, want); miss != "" {
		t.Fatalf("timeline of %s: no %q in order %v; got %v", mac, miss, want, types)
	}
	t.Logf("timeline of %s: %s", mac, strings.Join(types, " "))
	return evs
}

// missingInOrder returns the first of want (type prefixes) not found in
// order in evs, or "".
func missingInOrder(evs []event, want []string) string {
	i := 0
	for _, e := range evs {
		if i < len(want) && strings.HasPrefix(e.Type, want[i]) {
			i++
		}
	}
	if i < len(want) {
		return want[i]
	}
	return ""
}

var summary struct {
	sync.Mutex
	lines []string
}

// record adds a line to the run's timing summary.
func record(format string, args ...any) {
	summary.Lock()
	summary.lines = append(summary.lines, fmt.Sprintf(format, args...))
	summary.Unlock()
}

// printSummary writes the timing summary to standard output.
func printSummary() {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.lines) == 0 {
		return
	}
	sort.Strings(summary.lines)
	fmt.Fprintln(os.Stdout, "e2e timings (power-on to first-boot config fetched):")
	for _, l := range summary.lines {
		fmt.Fprintln(os.Stdout, "  "+l)
	}
}
