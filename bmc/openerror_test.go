package bmc

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"matchbox/internal/needs"
)

// TestOpenFailureWording: a BMC that cannot be reached fails with what the
// provider said and the BMC's address and protocol, never bmclib's "no
// Opener implementations found"; the failure still classifies as
// unreachable.
func TestOpenFailureWording(t *testing.T) {
	drivers := []string{DriverRedfish}
	if _, err := exec.LookPath("ipmitool"); err == nil {
		drivers = append(drivers, DriverIPMI)
	} else {
		needs.Skipf(t, "ipmitool is not installed: %v", err)
	}
	for _, d := range drivers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := openBMCLib(ctx, Endpoint{Address: "127.0.0.1", Port: 1, Username: "u", Password: "p", Insecure: true}, d)
		cancel()
		if err == nil {
			t.Fatalf("%s: opened a session with 127.0.0.1:1", d)
		}
		msg := err.Error()
		if strings.Contains(msg, "Opener") || strings.Contains(msg, "errors occurred") ||
			!strings.Contains(msg, "the BMC at 127.0.0.1:1 did not open a "+d+" session: ") {
			t.Errorf("%s: %q", d, msg)
		}
		if k := classify(err); !errors.Is(k, ErrUnreachable) {
			t.Errorf("%s: %q classified %v, want unreachable", d, msg, k)
		}
	}
	// The wording of bmclib's framing alone.
	got := openFailure(errors.New("1 error occurred:\n\t* no Opener implementations found\n\n"), DriverIPMI, Endpoint{Address: "10.0.10.11", Port: 623}).Error()
	if want := "the BMC at 10.0.10.11:623 did not open a ipmi session: it did not answer"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
