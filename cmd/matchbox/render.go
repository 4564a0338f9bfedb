package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

// newRenderCommand returns `matchbox render`: what a machine would get from
// a boot endpoint, and which group and profile chose it, shown through the
// API (read role) without creating machines, recording events or moving
// states. The boot endpoint is the optional argument (--endpoint is the
// server's URL, as in every client command).
func newRenderCommand() *cobra.Command {
	var mac, uuid, output string
	var labels []string
	cmd := &cobra.Command{
		Use:   "render [ipxe|grub|ignition|generic|metadata] --mac MAC [--uuid UUID] [--label k=v]...",
		Short: "Show what a machine would get from a boot endpoint, changing nothing",
		Long: "Render a boot endpoint (default ipxe) for the machine --mac and --uuid name,\n" +
			"with extra --label query labels, and show the group and profile that chose\n" +
			"the answer. Unlike a request to the boot endpoint itself, this creates no\n" +
			"machine, records no event and moves no state.",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"ipxe", "grub", "ignition", "generic", "metadata"},
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVar(&mac, "mac", "", "the machine's MAC address")
	cmd.Flags().StringVar(&uuid, "uuid", "", "the machine's SMBIOS UUID")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "an extra query label k=v (repeatable), such as os=installed")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (group and profile on stderr, the answer on stdout), yaml or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		endpoint := "ipxe"
		if len(args) == 1 {
			endpoint = args[0]
		}
		if mac == "" && uuid == "" {
			return fmt.Errorf("--mac or --uuid is required: they name the machine")
		}
		q := url.Values{}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				return fmt.Errorf("--label %q: want k=v", l)
			}
			q.Add(k, v)
		}
		if mac != "" {
			q.Set("mac", mac)
		}
		if uuid != "" {
			q.Set("uuid", uuid)
		}
		out, err := co.client().Render(cmd.Context(), endpoint, q)
		if err != nil {
			return err
		}
		switch output {
		case "text":
			group, profile := out.Group, out.Profile
			if group == "" {
				group = "-"
			}
			if profile == "" {
				profile = "-"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "# %s: status %d, group %s, profile %s\n", out.Endpoint, out.Status, group, profile)
			fmt.Fprint(cmd.OutOrStdout(), out.Body)
			if out.Status != 200 {
				return fmt.Errorf("%s would answer %d", out.Endpoint, out.Status)
			}
			return nil
		case "yaml", "json":
			return writeStructured(cmd.OutOrStdout(), output, out)
		}
		return fmt.Errorf("-o %q: want text, yaml or json", output)
	}
	return cmd
}
