// Package bmc powers machines and sets their next boot device through their
// BMC (IPMI or Redfish), using bmclib v2. It is how matchbox sends a machine
// into (re)provisioning: a one-time PXE boot, then a power cycle.
//
// # Use
//
//	ctl := bmc.New(bmc.Config{Logger: logger})
//	ep := bmc.Endpoint{Address: "10.0.0.5", Driver: "redfish", Username: u, Password: p, Insecure: true}
//	res, err := ctl.ProvisionBoot(ctx, ep)       // one-time PXE, then cycle (on if off)
//	state, err := ctl.PowerStatus(ctx, ep)       // on, off or unknown
//	res, err = ctl.SetPower(ctx, ep, bmc.ActionOff)
//	res, err = ctl.SetBootDevice(ctx, ep, bmc.BootOptions{Device: "disk", Persistent: true})
//	outcomes := bmc.RunAll(ctx, targets, 8, func(ctx context.Context, t bmc.Target) (bmc.Result, error) {
//		return ctl.ProvisionBoot(ctx, t.Endpoint)
//	})
//
// Every operation returns a Result (steps sent, driver that answered,
// attempts, duration, power state read back, boot override read back) that
// the server records as a machine timeline event, even when it fails.
//
// # Sessions, timeouts and retries
//
// Each attempt opens a bmclib session narrowed to one provider (ipmitool for
// "ipmi", gofish for "redfish"), runs the commands and closes the session,
// all within Config.Timeout (default 30s). A transient failure (connection
// refused, timeout, HTTP 502/503/504, no answer over RMCP+) is retried up to
// Config.Retries times with exponential backoff from Config.Backoff. An
// authentication failure (ErrAuth), an invalid argument and a boot override
// the BMC did not apply are never retried. Non-idempotent power actions
// (cycle, reset, soft) are not retried once the command was sent, so a
// machine is never cycled twice; on and off are.
//
// With Endpoint.Driver empty, the drivers of Config.DriverOrder are tried in
// turn (default redfish, then ipmi; see DefaultDriverOrder). Result.Driver
// says which one answered: store it to skip the probing next time.
//
// # Protocol notes
//
//   - "cycle" (and "reset") of a machine that is off powers it on: IPMI's
//     chassis cycle leaves an off machine off and Redfish refuses
//     ForceRestart on it.
//   - After a power action the state is polled for up to Config.Settle
//     (default 10s) until it reaches the expected state; Result.Settled says
//     whether it did. An unsettled state is not an error.
//   - Over Redfish the boot override is read back (Boot.BootSourceOverride-
//     Target and -Enabled); a BMC that acknowledged the PATCH but does not
//     hold the override yields ErrBootDeviceNotApplied. Over IPMI it cannot
//     be read back: Result.BootVerified stays false.
//   - ipmitool reports a refused password and an unreachable BMC with the
//     same message; on that message a verbose ipmitool probe tells them
//     apart so that wrong credentials are reported as ErrAuth, not retried.
//   - The ipmitool binary (Debian package ipmitool) must be installed for
//     the IPMI driver. Endpoint.CipherSuite "3" is needed for BMCs (and
//     ipmi_sim) without suite 17.
//
// # Credentials
//
// Credentials never appear in errors, logs or Result: Endpoint's String and
// LogValue omit them, and driver messages are redacted before they are
// wrapped into *Error (which keeps only the redacted text). Package
// bmc/secret seals them at rest.
//
// # Test doubles
//
// Package bmc/ipmisim starts OpenIPMI's ipmi_sim as a real IPMI peer whose
// chassis state lives in files; package bmc/redfishtest is an HTTPS Redfish
// double with the resources bmclib's Redfish provider uses.
package bmc
