package bmc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"matchbox/bmc"
	"matchbox/bmc/redfishtest"
)

const (
	rfUser = "rf-operator-7"
	rfPass = "Zq9-rf-secret-pw"
)

func newRedfish(t *testing.T, opts redfishtest.Options) (*redfishtest.Server, bmc.Endpoint) {
	t.Helper()
	opts.Username, opts.Password = rfUser, rfPass
	srv := redfishtest.New(opts)
	t.Cleanup(srv.Close)
	host, port := srv.HostPort()
	return srv, bmc.Endpoint{Address: host, Port: port, Driver: bmc.DriverRedfish, Username: rfUser, Password: rfPass, Insecure: true}
}

func newController(t *testing.T, logBuf *bytes.Buffer) *bmc.Controller {
	t.Helper()
	cfg := bmc.Config{Timeout: 20 * time.Second, Retries: 2, Backoff: 10 * time.Millisecond, Settle: 5 * time.Second}
	if logBuf != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return bmc.New(cfg)
}

func TestRedfishPower(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		poweredOn  bool
		action     bmc.PowerAction
		wantState  bmc.PowerState
		wantResets []string
	}{
		{"on from off", false, bmc.ActionOn, bmc.PowerOn, []string{"On"}},
		{"on when on sends nothing", true, bmc.ActionOn, bmc.PowerOn, nil},
		{"off from on", true, bmc.ActionOff, bmc.PowerOff, []string{"ForceOff"}},
		{"soft from on", true, bmc.ActionSoft, bmc.PowerOff, []string{"GracefulShutdown"}},
		{"cycle when on", true, bmc.ActionCycle, bmc.PowerOn, []string{"ForceRestart"}},
		{"cycle when off powers on", false, bmc.ActionCycle, bmc.PowerOn, []string{"On"}},
		{"reset when on", true, bmc.ActionReset, bmc.PowerOn, []string{"PowerCycle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, ep := newRedfish(t, redfishtest.Options{PoweredOn: tc.poweredOn})
			ctl := newController(t, nil)
			res, err := ctl.SetPower(ctx, ep, tc.action)
			if err != nil {
				t.Fatalf("SetPower(%s): %v", tc.action, err)
			}
			if res.PowerState != tc.wantState || !res.Settled {
				t.Errorf("Result.PowerState = %s settled=%v, want %s", res.PowerState, res.Settled, tc.wantState)
			}
			if got := srv.Resets(); strings.Join(got, ",") != strings.Join(tc.wantResets, ",") {
				t.Errorf("reset actions = %q, want %q", got, tc.wantResets)
			}
			if res.Driver != bmc.DriverRedfish || res.Provider != "gofish" || res.Attempts != 1 {
				t.Errorf("Result = %+v, want driver redfish via gofish in 1 attempt", res)
			}
			if n := srv.OpenSessions(); n != 0 {
				t.Errorf("%d Redfish sessions left open", n)
			}
			st, err := ctl.PowerStatus(ctx, ep)
			if err != nil || st != tc.wantState {
				t.Errorf("PowerStatus = %s, %v; want %s", st, err, tc.wantState)
			}
		})
	}
}

func TestRedfishBootDevice(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		opts        bmc.BootOptions
		ignore      bool
		wantTarget  string
		wantEnabled string
		wantErr     error
	}{
		{"pxe once", bmc.BootOptions{Device: "pxe"}, false, "Pxe", "Once", nil},
		{"pxe once efi", bmc.BootOptions{Device: "pxe", EFI: true}, false, "Pxe", "Once", nil},
		{"disk persistent", bmc.BootOptions{Device: "disk", Persistent: true}, false, "Hdd", "Continuous", nil},
		{"acknowledged but not applied", bmc.BootOptions{Device: "pxe"}, true, "None", "Disabled", bmc.ErrBootDeviceNotApplied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, ep := newRedfish(t, redfishtest.Options{IgnoreBootPatch: tc.ignore})
			res, err := newController(t, nil).SetBootDevice(ctx, ep, tc.opts)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("SetBootDevice err = %v, want %v", err, tc.wantErr)
			}
			target, enabled, _ := srv.Boot()
			if target != tc.wantTarget || enabled != tc.wantEnabled {
				t.Errorf("BMC holds %s/%s, want %s/%s", target, enabled, tc.wantTarget, tc.wantEnabled)
			}
			if res.BootVerified != (tc.wantErr == nil) {
				t.Errorf("BootVerified = %v with err %v", res.BootVerified, err)
			}
			if tc.wantErr == nil && res.BootDevice != tc.opts.Device {
				t.Errorf("read-back BootDevice = %q, want %q", res.BootDevice, tc.opts.Device)
			}
			if tc.wantErr != nil && res.Attempts != 1 {
				t.Errorf("attempts = %d: a boot override the BMC ignored must not be retried", res.Attempts)
			}
			if n := srv.OpenSessions(); n != 0 {
				t.Errorf("%d Redfish sessions left open", n)
			}
		})
	}
}

func TestRedfishProvisionBoot(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv, ep := newRedfish(t, redfishtest.Options{PoweredOn: on})
		res, err := newController(t, nil).ProvisionBoot(context.Background(), ep)
		if err != nil {
			t.Fatalf("ProvisionBoot (powered on: %v): %v", on, err)
		}
		target, enabled, _ := srv.Boot()
		if target != "Pxe" || enabled != "Once" || srv.Power() != "On" || res.PowerState != bmc.PowerOn || !res.BootVerified {
			t.Errorf("after ProvisionBoot (was on: %v): boot %s/%s power %s, result %+v", on, target, enabled, srv.Power(), res)
		}
		want := map[bool]string{false: "On", true: "ForceRestart"}[on]
		if got := srv.Resets(); len(got) != 1 || got[0] != want {
			t.Errorf("resets = %q, want [%s]", got, want)
		}
	}
}

// TestRedfishRequests logs what bmclib's Redfish provider asks of a BMC, and
// checks that every session it opened was closed.
func TestRedfishRequests(t *testing.T) {
	srv, ep := newRedfish(t, redfishtest.Options{})
	if _, err := newController(t, nil).ProvisionBoot(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	var logins, logouts int
	for _, r := range srv.Requests() {
		t.Logf("%s %s", r.Method, r.Path)
		switch {
		case r.Method == "POST" && strings.HasSuffix(r.Path, "/Sessions"):
			logins++
		case r.Method == "DELETE":
			logouts++
		}
	}
	if logins == 0 || logins != logouts {
		t.Errorf("%d logins, %d logouts", logins, logouts)
	}
}

func TestRedfishTransientThenSuccess(t *testing.T) {
	srv, ep := newRedfish(t, redfishtest.Options{FailFirst: 2, PoweredOn: true})
	st, err := newController(t, nil).PowerStatus(context.Background(), ep)
	if err != nil || st != bmc.PowerOn {
		t.Fatalf("PowerStatus = %s, %v; want on after retries", st, err)
	}
	if n := len(srv.Requests()); n < 3 {
		t.Errorf("only %d requests: the 503 answers were not retried", n)
	}
}

func TestRedfishAuthFailureNotRetriedNoLeak(t *testing.T) {
	srv, ep := newRedfish(t, redfishtest.Options{})
	ep.Password = "wrong-Pw-123456"
	var logBuf bytes.Buffer
	res, err := newController(t, &logBuf).SetPower(context.Background(), ep, bmc.ActionOn)
	if !errors.Is(err, bmc.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if res.Attempts != 1 {
		t.Errorf("attempts = %d, want 1: authentication failures are not retried", res.Attempts)
	}
	if srv.Power() != "Off" {
		t.Errorf("power changed despite the authentication failure")
	}
	assertNoSecrets(t, ep, err.Error(), logBuf.String(), fmtResult(res))
}

func TestRedfishTLSVerification(t *testing.T) {
	_, ep := newRedfish(t, redfishtest.Options{})
	ep.Insecure = false
	res, err := bmc.New(bmc.Config{Retries: 3, Backoff: time.Millisecond}).PowerStatus(context.Background(), ep)
	if err == nil {
		t.Fatalf("a self-signed certificate was accepted without Insecure")
	}
	if errors.Is(err, bmc.ErrUnreachable) {
		t.Errorf("certificate failure classified as transient: %v (%v)", err, res)
	}
}
