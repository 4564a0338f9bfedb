// Command matchbox is the matchbox provisioning server and its client.
//
//	matchbox serve --data-dir DIR   serve DHCP, TFTP, HTTP boot endpoints and the API
//	matchbox                        the same as matchbox serve, as v0.11's unit runs it
//	matchbox version                print the version, commit and Go version
//
// Every flag can also be set through an environment variable named
// MATCHBOX_ followed by the flag name in upper case with dashes as
// underscores (--data-dir: MATCHBOX_DATA_DIR). A flag given on the command
// line wins over the environment. matchbox v0.11's flags and variables
// (MATCHBOX_ADDRESS, MATCHBOX_DATA_PATH, ...) are aliases: see package v011.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"matchbox/version"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCommand()
	root.SetArgs(withServeDefault(root, os.Args[1:]))
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "matchbox:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "matchbox:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "matchbox",
		Short:         "Hardware-aware bare-metal provisioning: DHCP, TFTP, iPXE and first-boot configs",
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return bindEnv(cmd.Flags())
		},
	}
	root.AddCommand(
		newServeCommand(),
		// API clients
		newGetCommand(),
		newDeleteCommand(),
		newMachineCommand(),
		newPlanCommand(),
		newRenderCommand(),
		newApplyCommand(),
		newAuditCommand(),
		newStoreCommand(),
		newVersionCommand(),
	)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(root.UsageTemplate() + envHelp)
	return root
}

// envHelp ends every command's help: flags also come from the environment.
const envHelp = `
Environment:
  Every flag can be set by MATCHBOX_<FLAG>, upper case with dashes as
  underscores (--data-dir: MATCHBOX_DATA_DIR, --endpoint: MATCHBOX_ENDPOINT,
  --token: MATCHBOX_TOKEN); the command line wins. matchbox v0.11's variables
  and single-dash flags (MATCHBOX_ADDRESS, MATCHBOX_DATA_PATH, -data-path, ...)
  are aliases of serve's flags; an alias that disagrees with its flag is an error.
`

// envName is the environment variable that sets a flag.
func envName(flag string) string {
	return "MATCHBOX_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag not given on the command line from its
// MATCHBOX_* environment variable, if set.
func bindEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Annotations[v011Annotation] != nil {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			var items []string
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					items = append(items, item)
				}
			}
			if err := sv.Replace(items); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
			f.Changed = true
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}
