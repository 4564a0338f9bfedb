package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"matchbox/api/client"
	"matchbox/matchbox"
)

// machineChange is what `machine set` changes of a machine.
type machineChange struct {
	labels   []string // KEY=VALUE to set, KEY- to remove
	state    string
	ip       string
	hostname string
	macs     []string
	create   bool // the machine does not exist yet
}

// apply changes m; a wrong label or state is an error naming it.
func (ch machineChange) apply(m *matchbox.Machine) error {
	for _, l := range ch.labels {
		if key, ok := strings.CutSuffix(l, "-"); ok && !strings.Contains(l, "=") {
			delete(m.Labels, key)
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE, or KEY- to remove the label", l)
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[k] = v
	}
	if ch.state != "" {
		st := matchbox.MachineState(ch.state)
		if !st.Valid() {
			return fmt.Errorf("--state %q: want discovered, ready, provisioning, provisioned or failed", ch.state)
		}
		m.State = st
	}
	if ch.ip != "" {
		m.IP = ch.ip
		if ch.ip == "-" {
			m.IP = ""
		}
	}
	if ch.hostname != "" {
		m.Hostname = ch.hostname
	}
	for _, mac := range ch.macs {
		n, err := matchbox.NormalizeMAC(mac)
		if err != nil {
			return fmt.Errorf("--mac %q: %w", mac, err)
		}
		if !contains(m.MACs, n) {
			m.MACs = append(m.MACs, n)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newMachineSetCommand() *cobra.Command {
	var ch machineChange
	cmd := &cobra.Command{
		Use:   "set ID [--label KEY=VALUE|KEY-]... [--state STATE] [--ip IP|-] [--hostname H] [--mac MAC]... [--create]",
		Short: "Set a machine's labels, state, reserved IP, hostname or MACs (through the API)",
		Long: `Set a machine's labels, state, reserved IP, hostname or MACs through the API.
The machine is read, changed and written back under its version, so a
concurrent change is refused instead of undone. ID is the machine's id or
one of its MACs (any notation). With --create a machine that does not exist
is declared (a MAC-form ID gives it that MAC).

  matchbox machine set node1 --label rack=r12 --label old-
  matchbox machine set 52:54:00:a1:9c:ae --state ready --ip 10.0.0.21`,
		Args: cobra.ExactArgs(1),
	}
	co := addClientFlags(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&ch.labels, "label", nil, "set a label KEY=VALUE, or remove one with KEY- (repeatable)")
	f.StringVar(&ch.state, "state", "", "lifecycle state: discovered, ready, provisioning, provisioned or failed")
	f.StringVar(&ch.ip, "ip", "", "reserved IPv4 address for authoritative DHCP (- removes it)")
	f.StringVar(&ch.hostname, "hostname", "", "host name")
	f.StringArrayVar(&ch.macs, "mac", nil, "add a MAC address (repeatable)")
	f.BoolVar(&ch.create, "create", false, "declare the machine when it does not exist")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, c, id := cmd.Context(), co.client(), args[0]
		var m *matchbox.Machine
		var version int64
		switch got, v, err := c.Machine(ctx, id); {
		case err == nil:
			m, version = &got.Machine, v
		case client.IsStatus(err, http.StatusNotFound) && ch.create:
			m = &matchbox.Machine{ID: id}
			if mac, err := matchbox.NormalizeMAC(id); err == nil {
				m.ID = strings.ReplaceAll(mac, ":", "-")
				ch.macs = append(ch.macs, mac)
			}
		case client.IsStatus(err, http.StatusNotFound):
			return fmt.Errorf("%w (--create declares it)", err)
		default:
			return err
		}
		if err := ch.apply(m); err != nil {
			return err
		}
		got, v, err := c.PutMachine(ctx, m, version)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "machine %s: version %d, state %s, labels %s, ip %s\n",
			got.ID, v, got.State, dash(matchbox.Labels(got.Labels).String()), dash(got.IP))
		return nil
	}
	return cmd
}
