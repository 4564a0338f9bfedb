package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"matchbox/api/client"
	"matchbox/api/wire"
	"matchbox/matchbox"
)

// bmcPasswordEnv is the environment variable that may hold the BMC password
// of `machine bmc set`, so that it never shows in the process list.
const bmcPasswordEnv = "MATCHBOX_BMC_PASSWORD"

// printMachinesWide writes the machine table with its hardware columns.
func printMachinesWide(w io.Writer, items []wire.Item) {
	fmt.Fprintln(w, "ID\tSTATE\tGROUP\tMACS\tCORES\tMEMORY\tDISKS\tVENDOR\tLABELS")
	for _, it := range items {
		m := it.Machine
		cores, memory, disks, vendor := "-", "-", "-", "-"
		if s := m.InventorySummary; s != nil {
			cores = strconv.Itoa(s.CPUCores)
			memory = humanBytes(s.MemoryBytes)
			disks = strconv.Itoa(s.Disks)
			if s.Disks > 0 {
				disks += " (" + humanBytes(s.DiskBytes) + ")"
			}
			vendor = dash(strings.TrimSpace(s.Vendor + " " + s.Product))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, dash(m.ShownGroup()), dash(strings.Join(m.MACs, ",")),
			cores, memory, disks, vendor, dash(matchbox.Labels(m.Labels).String()))
	}
}

// humanBytes formats a size in binary units: 64GiB, 1.5TiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + string("KMGTPE"[exp]) + "iB"
}

// machineShow is what `machine show -o yaml|json` prints.
type machineShow struct {
	Machine *wire.Machine    `json:"machine" yaml:"machine"`
	Version int64            `json:"version" yaml:"version"`
	BMC     *wire.BMC        `json:"bmc" yaml:"bmc"`
	Events  []matchbox.Event `json:"events" yaml:"events"`
}

func newMachineShowCommand() *cobra.Command {
	var output string
	var events int
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a machine: identity, state, group, labels, BMC, hardware and its last events",
		Args:  cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	cmd.Flags().IntVar(&events, "events", 10, "show this many of the machine's last events (0: none)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := outputFormat(output); err != nil {
			return err
		}
		ctx, c, id := cmd.Context(), co.client(), args[0]
		m, version, err := c.Machine(ctx, id)
		if err != nil {
			return err
		}
		out := machineShow{Machine: m, Version: version, Events: []matchbox.Event{}}
		bmcNote := "none"
		switch b, err := c.BMC(ctx, id); {
		case err == nil:
			out.BMC = b
		case client.IsStatus(err, http.StatusNotFound):
		case client.IsStatus(err, http.StatusNotImplemented):
			bmcNote = "none (the server runs without BMC control)"
		default:
			return err
		}
		if events > 0 {
			// The timeline is oldest first: keep the last ones.
			evs, err := c.Events(ctx, id, "", 0)
			if err != nil {
				return err
			}
			if len(evs) > events {
				evs = evs[len(evs)-events:]
			}
			out.Events = append(out.Events, evs...)
		}
		if output != "table" {
			return writeStructured(cmd.OutOrStdout(), output, out)
		}
		return printMachineShow(cmd.OutOrStdout(), out, bmcNote)
	}
	return cmd
}

func printMachineShow(w io.Writer, s machineShow, bmcNote string) error {
	m := s.Machine
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, dash(v)) }
	row("ID", m.ID)
	row("State", string(m.State))
	row("Group", m.Group)
	if m.ServedGroup != "" {
		row("Served", fmt.Sprintf("group %s, profile %s", m.ServedGroup, m.ServedProfile))
	}
	row("MACs", strings.Join(m.MACs, ", "))
	row("UUID", m.UUID)
	row("Serial", m.Serial)
	row("Hostname", m.Hostname)
	row("IP", m.IP)
	row("Labels", matchbox.Labels(m.Labels).String())
	if m.PXEDisabled {
		row("PXE", "disabled")
	}
	row("Created", m.CreatedAt.Local().Format(time.RFC3339))
	row("Updated", fmt.Sprintf("%s (version %d)", m.UpdatedAt.Local().Format(time.RFC3339), s.Version))
	if b := s.BMC; b != nil {
		var extra []string
		if b.CipherSuite != "" {
			extra = append(extra, "cipher suite "+b.CipherSuite)
		}
		if b.Insecure {
			extra = append(extra, "TLS not verified")
		}
		if b.Credentials() {
			extra = append(extra, "credentials set")
		} else {
			extra = append(extra, "no credentials")
		}
		row("BMC", bmcString(b)+" ("+strings.Join(extra, ", ")+")")
	} else {
		row("BMC", bmcNote)
	}
	if inv := m.InventorySummary; inv != nil {
		row("Hardware", strings.TrimSpace(inv.Vendor+" "+inv.Product))
		cpu := fmt.Sprintf("%d cores, %d threads", inv.CPUCores, inv.CPUThreads)
		if inv.Arch != "" {
			cpu += ", " + inv.Arch
		}
		if inv.CPUModel != "" {
			cpu += " (" + inv.CPUModel + ")"
		}
		row("CPU", cpu)
		row("Memory", humanBytes(inv.MemoryBytes))
		row("Disks", fmt.Sprintf("%d (%s)", inv.Disks, humanBytes(inv.DiskBytes)))
		row("NICs", strconv.Itoa(inv.NICs))
		if !inv.CollectedAt.IsZero() {
			row("Inventory", "collected "+inv.CollectedAt.Local().Format(time.RFC3339))
		}
	} else {
		row("Inventory", "none reported")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Events) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nLast events:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tAT\tTYPE\tDETAIL")
	for _, ev := range s.Events {
		detail := "-"
		if len(ev.Detail) > 0 {
			b, _ := json.Marshal(ev.Detail)
			detail = string(b)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", ev.ID, ev.At.Local().Format(time.RFC3339), ev.Type, detail)
	}
	return tw.Flush()
}

func newMachineBMCCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "Declare, show or remove a machine's BMC",
	}
	cmd.AddCommand(newMachineBMCSetCommand(), newMachineBMCShowCommand(), newMachineBMCDeleteCommand())
	return cmd
}

func newMachineBMCSetCommand() *cobra.Command {
	var settings wire.BMC
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "set ID --address ADDR [--port P] [--driver ipmi|redfish] [--cipher-suite N] [--insecure] --username U --password-file FILE",
		Short: "Declare (replace) a machine's BMC and its credentials",
		Long: "Declare a machine's BMC. The password is read from --password-file (\"-\": standard\n" +
			"input; a trailing newline is dropped) or, without it, from " + bmcPasswordEnv + ", never\n" +
			"from the command line. The server seals it (it needs --secret-key-file) and never\n" +
			"shows it again. Setting a BMC replaces the previous one, credentials included.",
		Args: cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&settings.Address, "address", "", "BMC host name or IP address (required)")
	f.IntVar(&settings.Port, "port", 0, "BMC port (default: 623 for IPMI, 443 for Redfish)")
	f.StringVar(&settings.Driver, "driver", "", "ipmi or redfish (default: the server's --bmc-driver-order)")
	f.StringVar(&settings.CipherSuite, "cipher-suite", "", "IPMI cipher suite, e.g. 3 or 17 (default: try 3 then 17)")
	f.BoolVar(&settings.Insecure, "insecure", false, "do not verify the Redfish TLS certificate")
	f.StringVar(&settings.Username, "username", "", "BMC user name")
	f.StringVar(&passwordFile, "password-file", "", "file holding the BMC password (\"-\": standard input)")
	cmd.MarkFlagRequired("address")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		password, err := readBMCPassword(cmd.InOrStdin(), passwordFile)
		if err != nil {
			return err
		}
		if settings.Username == "" && password != "" {
			return errors.New("a BMC password needs --username")
		}
		if settings.Username != "" && password == "" {
			return fmt.Errorf("--username %s needs a password: --password-file FILE or %s", settings.Username, bmcPasswordEnv)
		}
		settings.Password = password
		b, err := co.client().SetBMC(cmd.Context(), args[0], settings)
		if err != nil {
			return err
		}
		creds := "without credentials"
		if b.Credentials() {
			creds = "credentials sealed"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "machine %s: BMC %s set (%s)\n", args[0], bmcString(b), creds)
		return nil
	}
	return cmd
}

// readBMCPassword reads the password from file ("-": in), or else from
// MATCHBOX_BMC_PASSWORD; one trailing newline is dropped.
func readBMCPassword(in io.Reader, file string) (string, error) {
	var raw string
	switch file {
	case "":
		raw = os.Getenv(bmcPasswordEnv)
	case "-":
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the BMC password from standard input: %w", err)
		}
		raw = line
	default:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		raw = string(b)
	}
	raw = strings.TrimSuffix(raw, "\n")
	raw = strings.TrimSuffix(raw, "\r")
	return raw, nil
}

// bmcString describes a BMC as driver://address[:port].
func bmcString(b *wire.BMC) string {
	driver := b.Driver
	if driver == "" {
		driver = "auto"
	}
	addr := b.Address
	if b.Port != 0 {
		addr += ":" + strconv.Itoa(b.Port)
	}
	return driver + "://" + addr
}

func newMachineBMCShowCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a machine's BMC (never its credentials)",
		Args:  cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "yaml" && output != "json" {
			return fmt.Errorf("-o %q: want yaml or json", output)
		}
		b, err := co.client().BMC(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return writeStructured(cmd.OutOrStdout(), output, b)
	}
	return cmd
}

func newMachineBMCDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Remove a machine's BMC and its credentials",
		Args:  cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := co.client().DeleteBMC(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "machine %s: BMC removed\n", args[0])
		return nil
	}
	return cmd
}

// describeResult is a one-line account of a BMC action.
func describeResult(r *wire.BMCResult) string {
	var parts []string
	if r.PowerState != "" {
		p := "power " + r.PowerState
		if !r.Settled && r.Operation != "boot-device" {
			p += " (not settled yet)"
		}
		parts = append(parts, p)
	}
	if r.BootDevice != "" {
		b := "boot " + r.BootDevice
		if r.BootVerified {
			b += " (verified)"
		}
		parts = append(parts, b)
	}
	if r.Driver != "" {
		parts = append(parts, "via "+r.Driver)
	}
	parts = append(parts, (time.Duration(r.DurationMS) * time.Millisecond).String())
	return strings.Join(parts, ", ")
}

func newMachinePowerCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:       "power ID on|off|cycle|reset|soft|status",
		Short:     "Read or change a machine's power through its BMC",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"on", "off", "cycle", "reset", "soft", "status"},
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "yaml" && output != "json" {
			return fmt.Errorf("-o %q: want text, yaml or json", output)
		}
		id, action := args[0], args[1]
		c := co.client()
		if action == "status" {
			state, err := c.PowerStatus(cmd.Context(), id)
			if err != nil {
				return err
			}
			if output != "text" {
				return writeStructured(cmd.OutOrStdout(), output, wire.PowerStatus{Power: state})
			}
			fmt.Fprintln(cmd.OutOrStdout(), state)
			return nil
		}
		res, err := c.Power(cmd.Context(), id, action)
		if err != nil {
			return err
		}
		if output != "text" {
			return writeStructured(cmd.OutOrStdout(), output, res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "machine %s: power %s done: %s\n", id, action, describeResult(res))
		return nil
	}
	return cmd
}

func newMachineBootDeviceCommand() *cobra.Command {
	var req wire.BootDeviceRequest
	var output string
	cmd := &cobra.Command{
		Use:       "bootdevice ID pxe|disk [--persistent] [--efi]",
		Short:     "Set a machine's next boot device through its BMC",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"pxe", "disk"},
	}
	co := addClientFlags(cmd)
	cmd.Flags().BoolVar(&req.Persistent, "persistent", false, "keep the device for every later boot, not the next one only")
	cmd.Flags().BoolVar(&req.EFI, "efi", false, "boot in UEFI mode rather than legacy BIOS")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "yaml" && output != "json" {
			return fmt.Errorf("-o %q: want text, yaml or json", output)
		}
		req.Device = args[1]
		res, err := co.client().BootDevice(cmd.Context(), args[0], req)
		if err != nil {
			return err
		}
		if output != "text" {
			return writeStructured(cmd.OutOrStdout(), output, res)
		}
		scope := "next boot"
		if req.Persistent {
			scope = "every boot"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "machine %s: boot device %s for the %s: %s\n", args[0], req.Device, scope, describeResult(res))
		return nil
	}
	return cmd
}

func newMachineProvisionCommand() *cobra.Command {
	var selector []string
	var output string
	cmd := &cobra.Command{
		Use:   "provision ID... | --selector KEY=VALUE[,KEY=VALUE]",
		Short: "Provision machines: one-time PXE boot, then a power cycle",
		Long: "Provision the named machines, or every machine whose labels include all of\n" +
			"--selector, through their BMCs. Prints one line per machine and exits 1 when\n" +
			"any failed (or none was selected).",
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringSliceVar(&selector, "selector", nil, "provision the machines with these labels (rack=r12,row=3)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "yaml" && output != "json" {
			return fmt.Errorf("-o %q: want text, yaml or json", output)
		}
		var req wire.ProvisionRequest
		switch {
		case len(selector) > 0 && len(args) > 0:
			return errors.New("name machines or give --selector, not both")
		case len(selector) > 0:
			req.Selector = map[string]string{}
			for _, term := range selector {
				k, v, ok := strings.Cut(term, "=")
				if !ok || k == "" {
					return fmt.Errorf("--selector %q: want KEY=VALUE", term)
				}
				req.Selector[k] = v
			}
		case len(args) > 0:
			req.IDs = args
		default:
			return errors.New("name the machines to provision, or give --selector KEY=VALUE")
		}
		ans, err := co.client().ProvisionMany(cmd.Context(), req)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if output != "text" {
			if err := writeStructured(w, output, ans); err != nil {
				return err
			}
		} else {
			for _, o := range ans.Outcomes {
				if o.OK {
					fmt.Fprintf(w, "%s: ok: provisioning (%s)\n", o.ID, describeResult(o.Result))
					continue
				}
				reason := "unknown error"
				if o.Error != nil {
					reason = o.Error.Message + " (" + o.Error.Code + ")"
				}
				fmt.Fprintf(w, "%s: failed: %s\n", o.ID, reason)
			}
		}
		if len(ans.Outcomes) == 0 {
			return &exitError{code: 1, err: fmt.Errorf("no machine has the labels %s", matchbox.Labels(req.Selector).String())}
		}
		if ans.Failed > 0 {
			return &exitError{code: 1, err: fmt.Errorf("%d of %d machines failed", ans.Failed, len(ans.Outcomes))}
		}
		return nil
	}
	return cmd
}
