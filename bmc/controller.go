package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Config configures a Controller. The zero value is usable.
type Config struct {
	// Timeout bounds each attempt: opening the session, the commands and
	// closing it (default 30s).
	Timeout time.Duration
	// Retries is how many times a transient failure (connection refused,
	// timeout, BMC busy) is retried; authentication failures and invalid
	// arguments are never retried. 0 means no retry; negative means the
	// default (2).
	Retries int
	// Backoff is the wait before the first retry, doubled for each further
	// retry (default 500ms).
	Backoff time.Duration
	// MaxBackoff caps the wait between retries (default 10s).
	MaxBackoff time.Duration
	// DriverOrder is the order in which drivers are tried for an Endpoint
	// with no Driver (default DefaultDriverOrder: redfish, then ipmi).
	DriverOrder []string
	// Settle bounds how long SetPower polls the power state after the
	// command until it reaches the state the action leads to (default 10s;
	// negative: read it once). An unsettled state is reported in Result,
	// not as an error: BMCs and operating systems may take longer.
	Settle time.Duration
	// Logger receives one record per attempt and per outcome (default:
	// discard). Credentials are never logged.
	Logger *slog.Logger

	// open replaces the bmclib session opener in tests.
	open opener
}

// Controller drives BMCs through bmclib. It holds no per-machine state and is
// safe for concurrent use.
type Controller struct {
	cfg Config
	log *slog.Logger
}

var _ Client = (*Controller)(nil)

// New returns a Controller for cfg, with defaults filled in.
func New(cfg Config) *Controller {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Retries < 0 {
		cfg.Retries = 2
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if len(cfg.DriverOrder) == 0 {
		cfg.DriverOrder = DefaultDriverOrder
	}
	cfg.DriverOrder = append([]string(nil), cfg.DriverOrder...)
	if cfg.Settle == 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.open == nil {
		cfg.open = openBMCLib
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, log: log}
}

// call is the state of one operation across its attempts.
type call struct {
	ep  Endpoint
	op  string
	res *Result
	// sent is set by the operation once a non-idempotent command has been
	// sent, so that a later failure is not retried.
	sent bool
}

// run opens a session, runs fn in it and closes it, retrying transient
// failures with exponential backoff. fn appends its steps to c.res.
func (ctl *Controller) run(ctx context.Context, c *call, fn func(ctx context.Context, s session) error) error {
	c.res.Endpoint = c.ep.String()
	c.res.Started = time.Now()
	if c.res.PowerState == "" {
		c.res.PowerState = PowerUnknown
	}
	defer func() { c.res.Duration = time.Since(c.res.Started) }()
	if err := c.ep.Validate(); err != nil {
		return ctl.fail(c, "", err)
	}
	drivers := ctl.cfg.DriverOrder
	if c.ep.Driver != DriverAuto {
		drivers = []string{c.ep.Driver}
	}
	backoff := ctl.cfg.Backoff
	var lastErr error
	var lastDriver string
	for attempt := 1; ; attempt++ {
		c.res.Attempts = attempt
		actx, cancel := context.WithTimeout(ctx, ctl.cfg.Timeout)
		lastDriver, lastErr = ctl.attempt(actx, c, drivers, fn)
		cancel()
		if lastErr == nil {
			ctl.log.LogAttrs(ctx, slog.LevelInfo, "bmc operation done",
				slog.String("op", c.op), slog.Any("endpoint", c.ep), slog.String("driver", c.res.Driver),
				slog.Int("attempts", attempt), slog.Duration("duration", time.Since(c.res.Started)),
				slog.String("power_state", string(c.res.PowerState)))
			return nil
		}
		kind := classify(lastErr)
		retry := kind == ErrUnreachable && !c.sent && attempt <= ctl.cfg.Retries && ctx.Err() == nil
		ctl.log.LogAttrs(ctx, slog.LevelWarn, "bmc attempt failed",
			slog.String("op", c.op), slog.Any("endpoint", c.ep), slog.String("driver", lastDriver),
			slog.Int("attempt", attempt), slog.Bool("retry", retry),
			slog.String("error", redact(lastErr.Error(), c.ep)))
		if !retry {
			return ctl.fail(c, lastDriver, lastErr)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctl.fail(c, lastDriver, fmt.Errorf("%w (while waiting to retry after: %v)", ctx.Err(), lastErr))
		case <-t.C:
		}
		backoff = min(2*backoff, ctl.cfg.MaxBackoff)
	}
}

// attempt opens a session through the first driver that answers, runs fn
// and closes the session.
func (ctl *Controller) attempt(ctx context.Context, c *call, drivers []string, fn func(context.Context, session) error) (string, error) {
	var s session
	var errs []error
	var driver string
	for _, d := range drivers {
		driver = d
		var err error
		s, err = ctl.cfg.open(ctx, c.ep, d)
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("open %s session: %w", d, err))
		if ctx.Err() != nil {
			break
		}
	}
	if s == nil {
		return driver, pickOpenError(errs)
	}
	c.res.Driver = s.driver()
	c.res.Provider = s.provider()
	defer func() {
		// Close even when ctx has ended: bmclib then uses a fresh context.
		if err := s.close(ctx); err != nil {
			ctl.log.LogAttrs(ctx, slog.LevelDebug, "bmc session close failed",
				slog.Any("endpoint", c.ep), slog.String("error", redact(err.Error(), c.ep)))
		}
	}()
	return s.driver(), fn(ctx, s)
}

// pickOpenError combines the errors of every driver tried, so that an
// authentication failure of one driver is not hidden by another driver
// being unreachable.
func pickOpenError(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	for _, e := range errs {
		if classify(e) == ErrAuth {
			return fmt.Errorf("%w (other drivers: %v)", e, errors.Join(errs...))
		}
	}
	return errors.Join(errs...)
}

// fail builds the operation's *Error.
func (ctl *Controller) fail(c *call, driver string, err error) error {
	e := &Error{
		Op:       c.op,
		Endpoint: c.ep.String(),
		Driver:   driver,
		Attempts: c.res.Attempts,
		Kind:     classify(err),
		Cause:    redact(strings.TrimSpace(err.Error()), c.ep),
	}
	switch {
	case errors.Is(err, context.Canceled):
		e.ctxErr = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		e.ctxErr = context.DeadlineExceeded
	}
	ctl.log.LogAttrs(context.Background(), slog.LevelError, "bmc operation failed",
		slog.String("op", c.op), slog.Any("endpoint", c.ep), slog.String("driver", driver),
		slog.Int("attempts", c.res.Attempts), slog.String("error", e.Error()))
	return e
}

// readPower reads and normalises the power state.
func readPower(ctx context.Context, s session) (PowerState, error) {
	raw, err := s.powerState(ctx)
	if err != nil {
		return PowerUnknown, fmt.Errorf("read power state: %w", err)
	}
	st := ParsePowerState(raw)
	if st == PowerUnknown {
		return st, fmt.Errorf("read power state: unrecognised answer %q", strings.TrimSpace(raw))
	}
	return st, nil
}

// PowerStatus reads the machine's power state.
func (ctl *Controller) PowerStatus(ctx context.Context, ep Endpoint) (PowerState, error) {
	res := Result{Operation: "power-status"}
	c := &call{ep: ep, op: "power status", res: &res}
	err := ctl.run(ctx, c, func(ctx context.Context, s session) error {
		res.Steps = append(res.Steps, "power-status")
		st, err := readPower(ctx, s)
		res.PowerState = st
		return err
	})
	return res.PowerState, err
}

// SetPower performs a power action, then reads the power state back (polling
// up to Config.Settle for the state the action leads to) and reports it.
// "cycle" powers on a machine that is off (IPMI's cycle would leave it off,
// Redfish's ForceRestart would be refused). Non-idempotent actions (cycle,
// reset, soft) are not retried once sent.
func (ctl *Controller) SetPower(ctx context.Context, ep Endpoint, action PowerAction) (Result, error) {
	res := Result{Operation: "power", Requested: string(action)}
	c := &call{ep: ep, op: "power " + string(action), res: &res}
	if !action.valid() {
		res.Endpoint, res.PowerState = ep.String(), PowerUnknown
		return res, ctl.fail(c, "", fmt.Errorf("%w: power action %q (want on, off, cycle, reset or soft)", ErrInvalidArgument, action))
	}
	err := ctl.run(ctx, c, func(ctx context.Context, s session) error {
		return ctl.powerIn(ctx, c, s, action)
	})
	return res, err
}

// powerIn runs a power action inside an open session.
func (ctl *Controller) powerIn(ctx context.Context, c *call, s session, action PowerAction) error {
	res := c.res
	send := action
	if action == ActionCycle || action == ActionReset {
		res.Steps = append(res.Steps, "power-status")
		st, err := readPower(ctx, s)
		if err != nil {
			return err
		}
		res.PowerState = st
		if st == PowerOff {
			send = ActionOn // a cycle or reset of a machine that is off powers it on
		}
	}
	res.Steps = append(res.Steps, "power "+string(send))
	if !send.idempotent() {
		c.sent = true
	}
	if err := s.setPower(ctx, string(send)); err != nil {
		return fmt.Errorf("power %s: %w", send, err)
	}
	if err := ctl.settle(ctx, c, s, action.expected()); err != nil {
		return err
	}
	if res.Settled || res.PowerState != PowerOff {
		return nil
	}
	if action == ActionCycle || action == ActionReset {
		// The machine switched itself off between the status read and the
		// command (an agent powering off after its report, say): a cycle
		// or reset of a machine that is off leaves it off on IPMI and is
		// refused by Redfish. Power it on.
		res.Steps = append(res.Steps, "power on")
		if err := s.setPower(ctx, string(ActionOn)); err != nil {
			return fmt.Errorf("power on after %s left the machine off: %w", send, err)
		}
		return ctl.settle(ctx, c, s, PowerOn)
	}
	return nil
}

// settle polls the power state until it is want or Config.Settle passed.
func (ctl *Controller) settle(ctx context.Context, c *call, s session, want PowerState) error {
	res := c.res
	deadline := time.Now().Add(ctl.cfg.Settle)
	wait := 200 * time.Millisecond
	for {
		st, err := readPower(ctx, s)
		res.Steps = append(res.Steps, "power-status")
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			res.PowerState = PowerUnknown
		} else {
			res.PowerState = st
		}
		res.Settled = res.PowerState == want
		if res.Settled || ctl.cfg.Settle < 0 || time.Now().Add(wait).After(deadline) {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil // the action was done; the state is reported unsettled
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// SetBootDevice sets the next boot device, then reads the override back
// where the protocol allows (Redfish) and returns ErrBootDeviceNotApplied
// when the BMC acknowledged the request but does not hold the override.
// Over IPMI the override cannot be read back: Result.BootVerified stays
// false.
func (ctl *Controller) SetBootDevice(ctx context.Context, ep Endpoint, opts BootOptions) (Result, error) {
	res := Result{Operation: "boot-device", Requested: opts.Device}
	c := &call{ep: ep, op: "boot device " + opts.Device, res: &res}
	if opts.Device != BootPXE && opts.Device != BootDisk {
		res.Endpoint, res.PowerState = ep.String(), PowerUnknown
		return res, ctl.fail(c, "", fmt.Errorf("%w: boot device %q (want pxe or disk)", ErrInvalidArgument, opts.Device))
	}
	err := ctl.run(ctx, c, func(ctx context.Context, s session) error {
		return bootIn(ctx, c, s, opts)
	})
	return res, err
}

// bootIn sets and verifies the boot device inside an open session.
func bootIn(ctx context.Context, c *call, s session, opts BootOptions) error {
	res := c.res
	res.Steps = append(res.Steps, "boot-device "+opts.Device+bootFlags(opts))
	if err := s.setBootDevice(ctx, opts.Device, opts.Persistent, opts.EFI); err != nil {
		return fmt.Errorf("set boot device %s: %w", opts.Device, err)
	}
	o, supported, err := s.bootOverride(ctx)
	if !supported {
		return nil
	}
	res.Steps = append(res.Steps, "boot-override-read")
	if err != nil {
		return fmt.Errorf("set boot device %s: read the override back: %w", opts.Device, err)
	}
	res.BootDevice = o.Device
	if o.Device != opts.Device || o.Persistent != opts.Persistent {
		mode := "once"
		if o.Persistent {
			mode = "continuous"
		}
		return fmt.Errorf("%w: asked for %s%s, the BMC holds %s (%s)", ErrBootDeviceNotApplied, opts.Device, bootFlags(opts), o.Device, mode)
	}
	res.BootVerified = true
	return nil
}

func bootFlags(o BootOptions) string {
	var f []string
	if o.Persistent {
		f = append(f, "persistent")
	}
	if o.EFI {
		f = append(f, "efi")
	}
	if len(f) == 0 {
		return ""
	}
	return " (" + strings.Join(f, ",") + ")"
}

// ProvisionBoot sets a one-time PXE boot and power-cycles the machine into
// it (powering it on if it is off), in one session per attempt. This is the
// flow provisioning uses. A failure after the power command was sent is not
// retried.
func (ctl *Controller) ProvisionBoot(ctx context.Context, ep Endpoint) (Result, error) {
	res := Result{Operation: "provision", Requested: "pxe+cycle"}
	c := &call{ep: ep, op: "provision", res: &res}
	err := ctl.run(ctx, c, func(ctx context.Context, s session) error {
		if err := bootIn(ctx, c, s, BootOptions{Device: BootPXE}); err != nil {
			return err
		}
		if err := ctl.powerIn(ctx, c, s, ActionCycle); err != nil {
			return err
		}
		if ctl.cfg.Settle >= 0 && res.PowerState == PowerOff {
			return fmt.Errorf("%w: the machine is still off after the power cycle", ErrFailed)
		}
		return nil
	})
	return res, err
}
