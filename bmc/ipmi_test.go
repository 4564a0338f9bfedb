package bmc_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"matchbox/bmc"
	"matchbox/bmc/ipmisim"
)

const (
	ipmiUser = "ipmi-op"
	ipmiPass = "Kx7-ipmi-secret"
)

func startSim(t *testing.T, on bool) (*ipmisim.Sim, bmc.Endpoint) {
	t.Helper()
	sim := ipmisim.Start(t, ipmisim.Options{Username: ipmiUser, Password: ipmiPass, PoweredOn: on})
	return sim, bmc.Endpoint{Address: sim.Host, Port: sim.Port, Driver: bmc.DriverIPMI,
		Username: sim.Username, Password: sim.Password, CipherSuite: sim.CipherSuite}
}

// waitEvents waits until the chassis_control events end with want (ipmi_sim
// powers a cycled chassis back on about a second after powering it off).
func waitEvents(t *testing.T, sim *ipmisim.Sim, want ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := sim.Events(t)
		if strings.HasSuffix(strings.Join(got, ","), strings.Join(want, ",")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("chassis_control events = %q, want them to end with %q", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ipmitoolSays checks that ipmitool itself reports the power state.
func ipmitoolSays(t *testing.T, sim *ipmisim.Sim, want bmc.PowerState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := sim.Ipmitool(ctx, "chassis", "power", "status")
	if err != nil {
		t.Fatalf("ipmitool: %v", err)
	}
	if got := bmc.ParsePowerState(out); got != want {
		t.Errorf("ipmitool says %q, want %s", strings.TrimSpace(out), want)
	}
}

func TestIPMIPowerAgainstIPMISim(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		poweredOn  bool
		action     bmc.PowerAction
		wantEvents []string
		wantState  bmc.PowerState
	}{
		{"on from off", false, bmc.ActionOn, []string{"power 1"}, bmc.PowerOn},
		{"off from on", true, bmc.ActionOff, []string{"power 0"}, bmc.PowerOff},
		{"cycle when on", true, bmc.ActionCycle, []string{"power 0", "power 1"}, bmc.PowerOn},
		{"cycle when off powers on", false, bmc.ActionCycle, []string{"power 1"}, bmc.PowerOn},
		{"reset when on", true, bmc.ActionReset, []string{"reset 1"}, bmc.PowerOn},
		{"soft when on", true, bmc.ActionSoft, []string{"shutdown 1"}, bmc.PowerOff},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, ep := startSim(t, tc.poweredOn)
			var logBuf bytes.Buffer
			res, err := newController(t, &logBuf).SetPower(ctx, ep, tc.action)
			if err != nil {
				t.Fatalf("SetPower(%s): %v", tc.action, err)
			}
			waitEvents(t, sim, tc.wantEvents...)
			if got := sim.Power(t); got != (tc.wantState == bmc.PowerOn) {
				t.Errorf("chassis power file on=%v, want %s", got, tc.wantState)
			}
			if res.PowerState != tc.wantState || !res.Settled {
				t.Errorf("Result.PowerState = %s settled=%v, want %s (steps %q)", res.PowerState, res.Settled, tc.wantState, res.Steps)
			}
			if res.Driver != bmc.DriverIPMI || res.Provider != "ipmitool" {
				t.Errorf("driver %s/%s, want ipmi/ipmitool", res.Driver, res.Provider)
			}
			ipmitoolSays(t, sim, tc.wantState)
			st, err := newController(t, nil).PowerStatus(ctx, ep)
			if err != nil || st != tc.wantState {
				t.Errorf("PowerStatus = %s, %v; want %s", st, err, tc.wantState)
			}
			assertNoSecrets(t, ep, logBuf.String(), fmtResult(res))
		})
	}
}

func TestIPMIProvisionBootAgainstIPMISim(t *testing.T) {
	for _, on := range []bool{false, true} {
		sim, ep := startSim(t, on)
		res, err := newController(t, nil).ProvisionBoot(context.Background(), ep)
		if err != nil {
			t.Fatalf("ProvisionBoot (was on: %v): %v", on, err)
		}
		if got := sim.Boot(t); got != "pxe" {
			t.Errorf("chassis boot file = %q, want pxe", got)
		}
		want := []string{"boot pxe", "power 1"}
		if on {
			want = []string{"boot pxe", "power 0", "power 1"}
		}
		waitEvents(t, sim, want...)
		if !sim.Power(t) || res.PowerState != bmc.PowerOn {
			t.Errorf("after ProvisionBoot (was on: %v): power file on=%v, result %+v", on, sim.Power(t), res)
		}
		if res.BootVerified {
			t.Errorf("BootVerified over IPMI, which cannot read the override back")
		}
		t.Logf("provision (was on: %v): %d attempts in %v, steps %q", on, res.Attempts, res.Duration, res.Steps)
	}
}

func TestIPMIBootDiskAgainstIPMISim(t *testing.T) {
	sim, ep := startSim(t, true)
	ctl := newController(t, nil)
	for _, dev := range []string{"pxe", "disk"} {
		if _, err := ctl.SetBootDevice(context.Background(), ep, bmc.BootOptions{Device: dev}); err != nil {
			t.Fatal(err)
		}
	}
	// ipmi_sim names the "force boot from default hard drive" selector "default".
	waitEvents(t, sim, "boot pxe", "boot default")
	if got := sim.Boot(t); got != "default" {
		t.Errorf("chassis boot file = %q, want default (disk)", got)
	}
}

func TestIPMIWrongPasswordAgainstIPMISim(t *testing.T) {
	sim, ep := startSim(t, false)
	ep.Password = "not-the-Pw-999"
	var logBuf bytes.Buffer
	res, err := newController(t, &logBuf).SetPower(context.Background(), ep, bmc.ActionOn)
	if err == nil {
		t.Fatal("power on with a wrong password succeeded")
	}
	if !errors.Is(err, bmc.ErrAuth) {
		t.Errorf("err = %v, want ErrAuth", err)
	}
	if res.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", res.Attempts)
	}
	if sim.Power(t) {
		t.Errorf("chassis powered on despite the wrong password")
	}
	assertNoSecrets(t, ep, err.Error(), logBuf.String(), fmtResult(res))
}

func TestAutoDriverFallsBackToIPMI(t *testing.T) {
	sim, ep := startSim(t, false)
	ep.Driver = bmc.DriverAuto // Redfish on the same port number over TCP is refused
	res, err := newController(t, nil).SetPower(context.Background(), ep, bmc.ActionOn)
	if err != nil {
		t.Fatalf("SetPower with automatic driver: %v", err)
	}
	if res.Driver != bmc.DriverIPMI || !sim.Power(t) {
		t.Errorf("driver %s, power on=%v; want ipmi and on", res.Driver, sim.Power(t))
	}
}
