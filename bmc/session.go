package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/go-logr/logr"
	"github.com/stmcginnis/gofish"
	rf "github.com/stmcginnis/gofish/redfish"
)

// bmclib provider names for each driver.
var providerFor = map[string]string{
	DriverIPMI:    "ipmitool",
	DriverRedfish: "gofish",
}

// bootOverride is a boot override read back from the BMC.
type bootOverride struct {
	Device     string
	Persistent bool
	EFI        bool
}

// session is one open BMC session through one driver.
type session interface {
	driver() string
	provider() string
	powerState(ctx context.Context) (string, error)
	setPower(ctx context.Context, action string) error
	setBootDevice(ctx context.Context, device string, persistent, efi bool) error
	// bootOverride reads the boot override back; supported is false when
	// the protocol cannot read it.
	bootOverride(ctx context.Context) (o bootOverride, supported bool, err error)
	close(ctx context.Context) error
}

// opener opens a session to ep through one driver.
type opener func(ctx context.Context, ep Endpoint, driver string) (session, error)

// bmclibSession is a session over a bmclib client narrowed to one provider.
type bmclibSession struct {
	drv    string
	ep     Endpoint
	client *bmclib.Client
}

// openBMCLib opens a bmclib session through the provider of driver.
func openBMCLib(ctx context.Context, ep Endpoint, driver string) (session, error) {
	provider, ok := providerFor[driver]
	if !ok {
		return nil, fmt.Errorf("%w: unknown driver %q", ErrInvalidArgument, driver)
	}
	opts := []bmclib.Option{bmclib.WithLogger(logr.Discard())}
	switch driver {
	case DriverIPMI:
		if ep.Port != 0 {
			opts = append(opts, bmclib.WithIpmitoolPort(strconv.Itoa(ep.Port)))
		}
		if ep.CipherSuite != "" {
			opts = append(opts, bmclib.WithIpmitoolCipherSuite(ep.CipherSuite))
		}
	case DriverRedfish:
		if ep.Port != 0 {
			opts = append(opts, bmclib.WithRedfishPort(strconv.Itoa(ep.Port)))
		}
		if !ep.Insecure {
			roots, err := x509.SystemCertPool()
			if err != nil {
				roots = x509.NewCertPool()
			}
			opts = append(opts, bmclib.WithSecureTLS(roots))
		}
	}
	host := ep.Address
	if driver == DriverRedfish && strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // IPv6 literal inside a URL
	}
	c := bmclib.NewClient(host, ep.Username, ep.Password, opts...)
	c.Registry.Drivers = c.Registry.For(provider)
	if len(c.Registry.Drivers) == 0 {
		return nil, fmt.Errorf("%w: bmclib provider %s for driver %s is not available (is ipmitool installed?)", ErrFailed, provider, driver)
	}
	if err := c.Open(ctx); err != nil {
		if driver == DriverIPMI && strings.Contains(err.Error(), "Unable to establish IPMI v2") && ctx.Err() == nil {
			if probe := probeIPMIAuth(ctx, ep); probe != "" {
				return nil, fmt.Errorf("%w: %s: %w", ErrAuth, probe, err)
			}
		}
		return nil, openFailure(err, driver, ep)
	}
	return &bmclibSession{drv: driver, ep: ep, client: c}, nil
}

// openError is a failure to open a bmclib session, worded without
// bmclib's own framing; it wraps bmclib's error.
type openError struct {
	msg string
	err error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() error { return e.err }

// openFailure rewords bmclib's Open error ("2 errors occurred: * provider:
// ipmitool: ... * no Opener implementations found") as what the provider
// said, naming the BMC's address and protocol.
func openFailure(err error, driver string, ep Endpoint) error {
	var reasons []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		switch {
		case line == "", strings.Contains(line, "no Opener implementations found"), strings.HasSuffix(line, "errors occurred:"), strings.HasSuffix(line, "error occurred:"):
			continue
		}
		if rest, ok := strings.CutPrefix(line, "provider: "); ok {
			line = rest
		}
		reasons = append(reasons, line)
	}
	reason := strings.Join(reasons, "; ")
	if reason == "" {
		reason = "it did not answer"
	}
	addr := ep.Address
	if ep.Port != 0 {
		addr = net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
	}
	return &openError{msg: fmt.Sprintf("the BMC at %s did not open a %s session: %s", addr, driver, reason), err: err}
}

func (s *bmclibSession) driver() string   { return s.drv }
func (s *bmclibSession) provider() string { return providerFor[s.drv] }

func (s *bmclibSession) powerState(ctx context.Context) (string, error) {
	return s.client.GetPowerState(ctx)
}

func (s *bmclibSession) setPower(ctx context.Context, action string) error {
	ok, err := s.client.SetPowerState(ctx, action)
	if err != nil {
		// bmclib's Redfish provider answers "not ok" without an error after
		// a successful GracefulShutdown request: the request was accepted.
		md := s.client.GetMetadata()
		if action == string(ActionSoft) && s.drv == DriverRedfish && len(md.FailedProviderDetail) == 0 {
			return nil
		}
		return err
	}
	if !ok {
		return fmt.Errorf("power %s: the BMC did not confirm the request", action)
	}
	return nil
}

func (s *bmclibSession) setBootDevice(ctx context.Context, device string, persistent, efi bool) error {
	ok, err := s.client.SetBootDevice(ctx, device, persistent, efi)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("boot device %s: the BMC did not confirm the request", device)
	}
	return nil
}

func (s *bmclibSession) bootOverride(ctx context.Context) (bootOverride, bool, error) {
	if s.drv != DriverRedfish {
		return bootOverride{}, false, nil // IPMI has no read-back through bmclib
	}
	o, err := readRedfishBoot(ctx, s.ep)
	return o, true, err
}

// readRedfishBoot reads Boot.BootSourceOverrideTarget, ...Enabled and
// ...Mode of the BMC's computer system in a session of its own: bmclib's
// own read-back omits BootSourceOverrideEnabled, so a BMC that keeps an old
// target but leaves the override disabled would look applied.
func readRedfishBoot(ctx context.Context, ep Endpoint) (bootOverride, error) {
	host := ep.Address
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	port := ep.Port
	if port == 0 {
		port = 443
	}
	tlsConf := &tls.Config{InsecureSkipVerify: ep.Insecure} //nolint:gosec // operator's explicit choice per endpoint
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}
	if deadline, ok := ctx.Deadline(); ok {
		hc.Timeout = time.Until(deadline)
	}
	c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:   "https://" + host + ":" + strconv.Itoa(port),
		Username:   ep.Username,
		Password:   ep.Password,
		HTTPClient: hc,
	})
	if err != nil {
		return bootOverride{}, fmt.Errorf("read boot override: %w", err)
	}
	defer c.Logout()
	systems, err := c.Service.Systems()
	if err != nil {
		return bootOverride{}, fmt.Errorf("read boot override: list systems: %w", err)
	}
	if len(systems) == 0 || systems[0] == nil {
		return bootOverride{}, fmt.Errorf("read boot override: the BMC lists no computer system")
	}
	b := systems[0].Boot
	o := bootOverride{
		Persistent: b.BootSourceOverrideEnabled == rf.ContinuousBootSourceOverrideEnabled,
		EFI:        b.BootSourceOverrideMode == rf.UEFIBootSourceOverrideMode,
	}
	switch {
	case b.BootSourceOverrideEnabled == rf.DisabledBootSourceOverrideEnabled || b.BootSourceOverrideEnabled == "":
		o.Device = "none"
	case b.BootSourceOverrideTarget == rf.PxeBootSourceOverrideTarget:
		o.Device = BootPXE
	case b.BootSourceOverrideTarget == rf.HddBootSourceOverrideTarget:
		o.Device = BootDisk
	default:
		o.Device = strings.ToLower(string(b.BootSourceOverrideTarget))
	}
	return o, nil
}

func (s *bmclibSession) close(ctx context.Context) error {
	return s.client.Close(ctx)
}

// probeIPMIAuth tells an IPMI BMC that refused the credentials from one that
// did not answer: ipmitool prints the same "Unable to establish IPMI v2 /
// RMCP+ session" for both, and names the RAKP failure only in verbose mode.
// It returns the RAKP failure, or "" when the BMC did not refuse the
// credentials.
func probeIPMIAuth(ctx context.Context, ep Endpoint) string {
	path, err := exec.LookPath("ipmitool")
	if err != nil {
		return ""
	}
	port := ep.Port
	if port == 0 {
		port = 623
	}
	args := []string{"-v", "-I", "lanplus", "-H", ep.Address, "-p", strconv.Itoa(port), "-U", ep.Username, "-E", "-N", "2", "-R", "1"}
	if ep.CipherSuite != "" {
		args = append(args, "-C", ep.CipherSuite)
	}
	cmd := exec.CommandContext(ctx, path, append(args, "chassis", "power", "status")...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + ep.Password}
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "rakp") && (strings.Contains(l, "invalid") || strings.Contains(l, "unauthorized") || strings.Contains(l, "error")) {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), ">"))
		}
	}
	return ""
}
