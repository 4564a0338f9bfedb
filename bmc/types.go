package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Driver names accepted in Endpoint.Driver and Config.DriverOrder.
const (
	// DriverIPMI drives the BMC over IPMI-over-LAN (RMCP+) through the
	// ipmitool binary.
	DriverIPMI = "ipmi"
	// DriverRedfish drives the BMC over Redfish (HTTPS).
	DriverRedfish = "redfish"
	// DriverAuto tries the drivers of Config.DriverOrder in turn.
	DriverAuto = ""
)

// DefaultDriverOrder is the order in which drivers are tried when an
// Endpoint names no driver: Redfish first, because it can read the boot
// override back (so an override the BMC ignored is detected) and carries
// credentials over TLS; IPMI second, for BMCs without Redfish. A BMC without
// Redfish refuses the HTTPS connection at once, so the fallback costs little.
var DefaultDriverOrder = []string{DriverRedfish, DriverIPMI}

// Endpoint says how to reach one machine's BMC. Its String and LogValue
// methods never include the credentials.
type Endpoint struct {
	// Address is the BMC's host name or IP address.
	Address string
	// Port is the BMC's port; 0 means the driver's default (623 for IPMI,
	// 443 for Redfish). With the automatic driver choice a non-zero Port is
	// used for every driver tried.
	Port int
	// Driver is "ipmi", "redfish" or "" to try Config.DriverOrder.
	Driver string
	// Username and Password authenticate to the BMC.
	Username, Password string
	// CipherSuite is the IPMI cipher suite ("3", "17"); empty lets ipmitool
	// try 3 then 17.
	CipherSuite string
	// Insecure skips verification of the Redfish TLS certificate (most BMCs
	// ship a self-signed one).
	Insecure bool
}

// String describes the endpoint without its credentials, e.g.
// "redfish://10.0.0.5:443" or "auto://10.0.0.5".
func (e Endpoint) String() string {
	scheme := e.Driver
	if scheme == "" {
		scheme = "auto"
	}
	host := e.Address
	if e.Port != 0 {
		host = net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	}
	return scheme + "://" + host
}

// LogValue implements slog.LogValuer so that logging an Endpoint never
// prints its credentials.
func (e Endpoint) LogValue() slog.Value {
	return slog.StringValue(e.String())
}

// FieldError is what Validate finds wrong with one field of an Endpoint.
// It matches ErrInvalidArgument with errors.Is.
type FieldError struct {
	// Field is the field's name as the API spells it (address, port,
	// driver, cipher_suite, username).
	Field string
	// Problem says what is wrong, naming the field.
	Problem string
}

func (e *FieldError) Error() string { return e.Problem }

// Unwrap makes a FieldError match ErrInvalidArgument.
func (e *FieldError) Unwrap() error { return ErrInvalidArgument }

// validCipherSuite matches IPMI cipher suite numbers.
var validCipherSuite = regexp.MustCompile(`^[0-9]{1,2}$`)

// Validate reports the first field of the endpoint that is missing or
// malformed, as a *FieldError. It is the one check of a BMC's settings:
// the API and the lifecycle call it before a BMC is stored, the controller
// before each session.
func (e Endpoint) Validate() error {
	switch {
	case strings.TrimSpace(e.Address) == "":
		return &FieldError{"address", "field address: the BMC's host name or IP address is required"}
	case e.Port < 0 || e.Port > 65535:
		return &FieldError{"port", fmt.Sprintf("field port %d: want 1 to 65535, or 0 for the driver's default", e.Port)}
	case e.Driver != DriverAuto && e.Driver != DriverIPMI && e.Driver != DriverRedfish:
		return &FieldError{"driver", fmt.Sprintf("field driver %q: want ipmi, redfish or empty (try the server's driver order)", e.Driver)}
	case e.CipherSuite != "" && !validCipherSuite.MatchString(e.CipherSuite):
		return &FieldError{"cipher_suite", fmt.Sprintf("field cipher_suite %q: want an IPMI cipher suite number (3, 17)", e.CipherSuite)}
	case e.Password != "" && e.Username == "":
		return &FieldError{"username", "field username: required with a password"}
	}
	return nil
}

// PowerState is a machine's normalised power state.
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
)

// ParsePowerState normalises the raw answers of bmclib's providers:
// ipmitool's "Chassis Power is on\n", Redfish's "On", "PoweringOn", ...
func ParsePowerState(raw string) PowerState {
	s := strings.ToLower(strings.TrimSpace(raw))
	s = strings.TrimPrefix(s, "chassis power is ")
	switch s {
	case "on", "poweringoff": // a machine powering off is still on
		return PowerOn
	case "off", "poweringon": // a machine powering on is not on yet
		return PowerOff
	}
	return PowerUnknown
}

// PowerAction is a power operation.
type PowerAction string

// Power actions accepted by SetPower.
const (
	// ActionOn powers the machine on (nothing to do when it is on).
	ActionOn PowerAction = "on"
	// ActionOff powers the machine off at once (nothing to do when off).
	ActionOff PowerAction = "off"
	// ActionCycle powers the machine off then on; a machine that is off is
	// powered on.
	ActionCycle PowerAction = "cycle"
	// ActionReset hard-resets a running machine.
	ActionReset PowerAction = "reset"
	// ActionSoft asks the operating system to shut down (ACPI).
	ActionSoft PowerAction = "soft"
)

// idempotent reports whether repeating the action is harmless, so that it
// may be retried after a failure that happened once it was sent.
func (a PowerAction) idempotent() bool { return a == ActionOn || a == ActionOff }

// expected is the power state the action leads to.
func (a PowerAction) expected() PowerState {
	switch a {
	case ActionOff, ActionSoft:
		return PowerOff
	default:
		return PowerOn
	}
}

func (a PowerAction) valid() bool {
	switch a {
	case ActionOn, ActionOff, ActionCycle, ActionReset, ActionSoft:
		return true
	}
	return false
}

// Boot devices accepted in BootOptions.Device.
const (
	BootPXE  = "pxe"
	BootDisk = "disk"
)

// BootOptions selects the next boot device.
type BootOptions struct {
	// Device is "pxe" or "disk".
	Device string
	// Persistent keeps the override for every later boot instead of the
	// next one only.
	Persistent bool
	// EFI requests UEFI boot rather than legacy BIOS boot.
	EFI bool
}

// Result records what an operation did; the server turns it into a machine
// timeline event. It never holds credentials.
type Result struct {
	// Endpoint is the BMC, as Endpoint.String prints it.
	Endpoint string `json:"endpoint"`
	// Operation is "power-status", "power", "boot-device" or "provision".
	Operation string `json:"operation"`
	// Requested is the requested action or device, e.g. "cycle" or "pxe".
	Requested string `json:"requested,omitempty"`
	// Steps lists the commands sent to the BMC in order, e.g.
	// ["power-status", "power on"] for a cycle of a machine that was off.
	Steps []string `json:"steps,omitempty"`
	// Driver is the protocol that answered: "ipmi" or "redfish".
	Driver string `json:"driver,omitempty"`
	// Provider is the bmclib provider that answered, e.g. "ipmitool", "gofish".
	Provider string `json:"provider,omitempty"`
	// Attempts counts the sessions opened, retries included.
	Attempts int `json:"attempts"`
	// Started is when the operation began.
	Started time.Time `json:"started"`
	// Duration is the operation's wall time, retries and backoff included.
	Duration time.Duration `json:"duration"`
	// PowerState is the power state read back last ("unknown" if not read).
	PowerState PowerState `json:"power_state"`
	// Settled is true when PowerState is the state the action leads to.
	Settled bool `json:"settled"`
	// BootDevice is the boot override as read back from the BMC, when the
	// protocol allows reading it (Redfish); empty otherwise.
	BootDevice string `json:"boot_device,omitempty"`
	// BootVerified is true when BootDevice was read back and matches.
	BootVerified bool `json:"boot_verified"`
}

// Target is one machine of a bulk operation.
type Target struct {
	// ID identifies the machine (the store's machine id).
	ID string
	// Endpoint is the machine's BMC.
	Endpoint Endpoint
}

// Outcome is the result of a bulk operation on one target.
type Outcome struct {
	// ID is the target's ID.
	ID string
	// Result is what the operation returned.
	Result Result
	// Err is the operation's error, nil on success.
	Err error
}

// Client is the BMC control interface the server uses; *Controller
// implements it.
type Client interface {
	PowerStatus(ctx context.Context, ep Endpoint) (PowerState, error)
	SetPower(ctx context.Context, ep Endpoint, action PowerAction) (Result, error)
	SetBootDevice(ctx context.Context, ep Endpoint, opts BootOptions) (Result, error)
	ProvisionBoot(ctx context.Context, ep Endpoint) (Result, error)
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrAuth reports that the BMC refused the credentials; never retried.
	ErrAuth = errors.New("bmc authentication failed")
	// ErrUnreachable reports a transient failure: connection refused, a
	// timeout, a BMC busy or unavailable. Retried.
	ErrUnreachable = errors.New("bmc unreachable")
	// ErrBootDeviceNotApplied reports a BMC that acknowledged a boot
	// override but, read back, does not hold it.
	ErrBootDeviceNotApplied = errors.New("bmc acknowledged the boot device but did not apply it")
	// ErrInvalidArgument reports an endpoint, action or device that is not
	// valid; nothing was sent to the BMC.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailed reports any other failure answered by the BMC or driver.
	ErrFailed = errors.New("bmc operation failed")
)
