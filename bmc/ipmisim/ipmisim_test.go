package ipmisim

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSimChassisControl checks the simulator recipe itself: ipmitool commands
// reach the chassis_control program and change its state files.
func TestSimChassisControl(t *testing.T) {
	s := Start(t, Options{Username: "opsuser", Password: "pw-s3cret"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		out, err := s.Ipmitool(ctx, args...)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return out
	}
	if out := run("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("initial status = %q, want off", out)
	}
	run("chassis", "power", "on")
	if !s.Power(t) {
		t.Fatalf("power file says off after power on")
	}
	if out := run("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("status after on = %q", out)
	}
	run("chassis", "bootdev", "pxe")
	if got := s.Boot(t); got != "pxe" {
		t.Fatalf("boot file = %q, want pxe", got)
	}
	run("chassis", "power", "off")
	if s.Power(t) {
		t.Fatalf("power file says on after power off")
	}
	want := []string{"power 1", "boot pxe", "power 0"}
	if got := s.Events(t); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events = %q, want %q", got, want)
	}
}
