package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"matchbox/api/client"
	"matchbox/api/wire"
	"matchbox/matchbox"
)

// clientOptions are the flags every API client command has.
type clientOptions struct {
	endpoint string
	token    string
	stderr   func() io.Writer // where the API's warnings are printed
}

// addClientFlags registers --endpoint and --token (MATCHBOX_ENDPOINT,
// MATCHBOX_TOKEN) on cmd.
func addClientFlags(cmd *cobra.Command) *clientOptions {
	o := &clientOptions{}
	cmd.Flags().StringVar(&o.endpoint, "endpoint", "http://127.0.0.1:8080", "matchbox server URL")
	cmd.Flags().StringVar(&o.token, "token", "", "API bearer token")
	o.stderr = cmd.ErrOrStderr
	return o
}

func (o *clientOptions) client() *client.Client {
	return &client.Client{Endpoint: o.endpoint, Token: o.token, Warn: func(w string) {
		fmt.Fprintln(o.stderr(), "warning:", w)
	}}
}

// outputFormat checks an -o value.
func outputFormat(f string) error {
	switch f {
	case "table", "yaml", "json":
		return nil
	}
	return fmt.Errorf("-o %q: want table, yaml or json", f)
}

func newGetCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get profiles|groups|machines|templates|ignition|generic|leases|instances [ID]",
		Short: "List or show catalog objects, machines, DHCP leases and instances",
		Long: "List the objects of a kind, or show one by its id. Templates are named\n" +
			"ignition/NAME or generic/NAME (or use the ignition and generic kinds).\n" +
			"Leases are named by their address; --mac and --state filter them.\n" +
			"Instances are the matchbox servers sharing the store.",
		Args: cobra.RangeArgs(1, 2),
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide (machines: adds hardware), yaml or json")
	var leaseMAC, leaseState string
	cmd.Flags().StringVar(&leaseMAC, "mac", "", "leases: only those of this MAC address")
	cmd.Flags().StringVar(&leaseState, "state", "", "leases: only those in this state (bound, released, declined)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "wide" && outputFormat(output) != nil {
			return fmt.Errorf("-o %q: want table, wide, yaml or json", output)
		}
		coll, err := client.Collection(args[0])
		if err != nil {
			return err
		}
		c := co.client()
		var items []wire.Item
		if coll == "/instances" {
			if len(args) == 2 {
				return fmt.Errorf("get instances takes no id")
			}
			if items, err = c.List(cmd.Context(), coll, nil); err != nil {
				return err
			}
			return printItems(cmd.OutOrStdout(), coll, items, output, false)
		}
		if coll == "/leases" {
			q := url.Values{}
			if len(args) == 2 {
				q.Set("ip", args[1])
			}
			if leaseMAC != "" {
				q.Set("mac", leaseMAC)
			}
			if leaseState != "" {
				q.Set("state", leaseState)
			}
			if items, err = c.List(cmd.Context(), coll, q); err != nil {
				return err
			}
			if len(args) == 2 && len(items) == 0 {
				return fmt.Errorf("no stored lease on %s", args[1])
			}
			return printItems(cmd.OutOrStdout(), coll, items, output, len(args) == 2)
		}
		if len(args) == 1 {
			if items, err = c.List(cmd.Context(), coll, nil); err != nil {
				return err
			}
		} else {
			it, err := getItem(cmd, c, coll, args[1])
			if err != nil {
				return err
			}
			items = []wire.Item{it}
		}
		return printItems(cmd.OutOrStdout(), coll, items, output, len(args) == 2)
	}
	return cmd
}

// getItem fetches one object as a list item.
func getItem(cmd *cobra.Command, c *client.Client, coll, id string) (wire.Item, error) {
	it := wire.Item{ID: id}
	var err error
	switch {
	case coll == "/profiles":
		it.Profile = new(matchbox.Profile)
		it.Version, err = c.Get(cmd.Context(), coll, id, it.Profile)
	case coll == "/groups":
		it.Group = new(matchbox.Group)
		it.Version, err = c.Get(cmd.Context(), coll, id, it.Group)
	case coll == "/machines":
		it.Machine = new(wire.Machine)
		it.Version, err = c.Get(cmd.Context(), coll, id, it.Machine)
	default:
		if coll == "/templates" {
			kind, name, ok := strings.Cut(id, "/")
			if !ok {
				return it, fmt.Errorf("template %q: name it ignition/NAME or generic/NAME", id)
			}
			coll, id = "/templates/"+kind, name
			it.ID = name
		}
		it.Template = new(matchbox.Template)
		it.Version, err = c.Get(cmd.Context(), coll, id, it.Template)
	}
	return it, err
}

// printItems writes items as a table (wide: with hardware columns for
// machines), or their objects as YAML or JSON (one object when single).
func printItems(w io.Writer, coll string, items []wire.Item, format string, single bool) error {
	if format != "table" && format != "wide" {
		objs := make([]any, 0, len(items))
		for _, it := range items {
			switch {
			case it.Profile != nil:
				objs = append(objs, it.Profile)
			case it.Group != nil:
				objs = append(objs, it.Group)
			case it.Machine != nil:
				objs = append(objs, it.Machine)
			case it.Lease != nil:
				objs = append(objs, it.Lease)
			case it.Instance != nil:
				objs = append(objs, it.Instance)
			default:
				objs = append(objs, it.Template)
			}
		}
		var v any = objs
		if single && len(objs) == 1 {
			v = objs[0]
		}
		return writeStructured(w, format, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch {
	case coll == "/profiles":
		fmt.Fprintln(tw, "ID\tNAME\tKERNEL\tIGNITION\tVERSION\tSOURCE")
		for _, it := range items {
			p := it.Profile
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", p.ID, dash(p.Name), dash(p.Boot.Kernel), dash(p.IgnitionID), it.Version, dash(it.Source))
		}
	case coll == "/groups":
		fmt.Fprintln(tw, "ID\tPROFILE\tSELECTOR\tPRIORITY\tVERSION\tSOURCE")
		for _, it := range items {
			g := it.Group
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", g.ID, g.Profile, dash(matchbox.Labels(g.Selector).String()), g.Priority, it.Version, dash(it.Source))
		}
	case coll == "/leases":
		fmt.Fprintln(tw, "IP\tMAC\tSTATE\tEXPIRES\tHOSTNAME")
		for _, it := range items {
			l := it.Lease
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.IP, l.MAC, l.State, l.Expires, dash(l.Hostname))
		}
	case coll == "/instances":
		fmt.Fprintln(tw, "ID\tADDRESSES\tVERSION\tDHCP RANGES\tSTARTED")
		for _, it := range items {
			in := it.Instance
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.ID, dash(strings.Join(in.Addresses, ",")), in.Version, dash(strings.Join(in.DHCPRanges, ",")), in.StartedAt)
		}
	case coll == "/machines" && format == "wide":
		printMachinesWide(tw, items)
	case coll == "/machines":
		fmt.Fprintln(tw, "ID\tSTATE\tMACS\tGROUP\tLABELS")
		for _, it := range items {
			m := it.Machine
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, dash(strings.Join(m.MACs, ",")), dash(m.ShownGroup()), dash(matchbox.Labels(m.Labels).String()))
		}
	default:
		fmt.Fprintln(tw, "KIND\tNAME\tBYTES\tVERSION\tSOURCE")
		for _, it := range items {
			t := it.Template
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", t.Kind, t.Name, len(t.Content), it.Version, dash(it.Source))
		}
	}
	return tw.Flush()
}

func writeStructured(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDeleteCommand() *cobra.Command {
	var ifVersion int64
	cmd := &cobra.Command{
		Use:   "delete profile|group|machine|ignition|generic ID",
		Short: "Delete a catalog object or a machine",
		Args:  cobra.ExactArgs(2),
	}
	co := addClientFlags(cmd)
	cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "delete only if the object is at this version")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		coll, err := client.Collection(args[0])
		if err != nil {
			return err
		}
		id := args[1]
		if coll == "/templates" {
			kind, name, ok := strings.Cut(id, "/")
			if !ok {
				return fmt.Errorf("template %q: name it ignition/NAME or generic/NAME", id)
			}
			coll, id = "/templates/"+kind, name
		}
		if err := co.client().Delete(cmd.Context(), coll, id, ifVersion); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deleted %s %s\n", strings.TrimSuffix(args[0], "s"), args[1])
		return nil
	}
	return cmd
}

func newMachineCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "machine",
		Short: "Inspect and set machines, declare their BMCs, power and provision them",
	}
	cmd.AddCommand(newMachineEventsCommand(), newMachineShowCommand(), newMachineSetCommand(), newMachineBMCCommand(), newMachinePowerCommand(),
		newMachineBootDeviceCommand(), newMachineProvisionCommand())
	return cmd
}

func newMachineEventsCommand() *cobra.Command {
	var output, typ string
	var limit int
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "Show a machine's boot timeline, oldest first",
		Args:  cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	cmd.Flags().StringVar(&typ, "type", "", "only events of this type, or of a prefix ending in a dot (dhcp.)")
	cmd.Flags().IntVar(&limit, "limit", 0, "show at most this many events (0: all)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := outputFormat(output); err != nil {
			return err
		}
		evs, err := co.client().Events(cmd.Context(), args[0], typ, limit)
		if err != nil {
			return err
		}
		if output != "table" {
			if evs == nil {
				evs = []matchbox.Event{}
			}
			return writeStructured(cmd.OutOrStdout(), output, evs)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAT\tTYPE\tDETAIL")
		for _, ev := range evs {
			detail := "-"
			if len(ev.Detail) > 0 {
				b, _ := json.Marshal(ev.Detail)
				detail = string(b)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strconv.FormatInt(ev.ID, 10), ev.At.Local().Format(time.RFC3339), ev.Type, detail)
		}
		return tw.Flush()
	}
	return cmd
}

// stdinIsTerminal reports whether r is a terminal.
func stdinIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && isTerminal(f.Fd())
}
