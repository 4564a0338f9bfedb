package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"matchbox/audit"
	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/location"
)

// Exit codes of `matchbox store copy`.
const (
	// copyFailed: a store could not be opened or read, or a write failed
	// (the destination then holds part of the copy).
	copyFailed = 1
	// copyRefused: the destination is not empty and --force was not given;
	// nothing was written.
	copyRefused = 2
)

func newStoreCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Operate on a store directly (not through a running server)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStoreCopyCommand())
	return cmd
}

// copyOptions are the flags of `matchbox store copy`.
type copyOptions struct {
	from, to location.Flags
	force    bool
}

func newStoreCopyCommand() *cobra.Command {
	var o copyOptions
	cmd := &cobra.Command{
		Use:   "copy --from STORE --to STORE [--force]",
		Short: "Copy a whole installation from one store to another (SQLite to etcd and back)",
		Long: "Copy the catalog (profiles, groups, templates, with their sources), the machines with\n" +
			"their BMC records, last inventories and timelines, and the DHCP leases from --from to\n" +
			"--to. STORE is sqlite:///path/to.db or etcd://host:2379[,host:2379...]/prefix; each\n" +
			"side takes its own etcd TLS and user flags (--from-etcd-*, --to-etcd-*).\n\n" +
			"Stop every matchbox serve of both stores first: writes made during the copy may be\n" +
			"missed. The destination must be empty (no catalog object, machine or lease) unless\n" +
			"--force, which writes over it: objects and machines of the same id are replaced, the\n" +
			"others are kept. Versions restart in the destination; event ids change, their times\n" +
			"do not; only the last inventory report of each machine is copied.\n\n" +
			"Exit status: 0 copied; 1 failed (a store could not be opened or a write failed: the\n" +
			"destination may hold part of the copy); 2 refused, the destination is not empty\n" +
			"(nothing written).",
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	for _, side := range []struct {
		name string
		fl   *location.Flags
	}{{"from", &o.from}, {"to", &o.to}} {
		f.StringVar(&side.fl.Store, side.name, "", "store to copy "+side.name+": sqlite:///path/to.db or etcd://host:2379[,...]/prefix")
		f.StringVar(&side.fl.CertFile, side.name+"-etcd-cert-file", "", "client certificate presented to the --"+side.name+" etcd")
		f.StringVar(&side.fl.KeyFile, side.name+"-etcd-key-file", "", "private key of --"+side.name+"-etcd-cert-file")
		f.StringVar(&side.fl.CAFile, side.name+"-etcd-ca-file", "", "CA bundle that signs the --"+side.name+" etcd's server certificates (turns TLS on)")
		f.StringVar(&side.fl.Username, side.name+"-etcd-username", "", "user of the --"+side.name+" etcd (with --"+side.name+"-etcd-password-file)")
		f.StringVar(&side.fl.PasswordFile, side.name+"-etcd-password-file", "", "file holding the password of --"+side.name+"-etcd-username")
	}
	f.BoolVar(&o.force, "force", false, "copy into a destination that is not empty, replacing objects and machines of the same id")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runStoreCopy(cmd.Context(), cmd.OutOrStdout(), o)
	}
	return cmd
}

func runStoreCopy(ctx context.Context, out io.Writer, o copyOptions) error {
	if o.from.Store == "" || o.to.Store == "" {
		return &exitError{code: copyFailed, err: errors.New("store copy: give both --from and --to")}
	}
	from, err := resolveSide("--from", o.from)
	if err != nil {
		return &exitError{code: copyFailed, err: err}
	}
	to, err := resolveSide("--to", o.to)
	if err != nil {
		return &exitError{code: copyFailed, err: err}
	}
	if from.String() == to.String() {
		return &exitError{code: copyFailed, err: fmt.Errorf("store copy: --from and --to are the same store (%s)", from)}
	}
	if from.Kind == location.SQLite {
		// Opening creates a missing file: a typo would copy nothing.
		if _, err := os.Stat(from.Path); err != nil {
			return &exitError{code: copyFailed, err: fmt.Errorf("--from %s: %w", from, err)}
		}
	}
	log := slog.New(slog.DiscardHandler)
	src, closeSrc, err := openStore(ctx, &serveOptions{store: from, dbPath: from.Path}, log)
	if err != nil {
		return &exitError{code: copyFailed, err: fmt.Errorf("--from: %w", err)}
	}
	defer closeSrc()
	dst, closeDst, err := openStore(ctx, &serveOptions{store: to, dbPath: to.Path}, log)
	if err != nil {
		return &exitError{code: copyFailed, err: fmt.Errorf("--to: %w", err)}
	}
	defer closeDst()
	held, err := contents(ctx, dst)
	if err != nil {
		return &exitError{code: copyFailed, err: fmt.Errorf("--to %s: %w", to, err)}
	}
	if held != "" && !o.force {
		return &exitError{code: copyRefused, err: fmt.Errorf("--to %s is not empty (it holds %s): nothing copied; --force writes over it", to, held)}
	}
	res, err := store.Copy(audit.WithActor(ctx, audit.ActorCLI), src, dst)
	if err != nil {
		return &exitError{code: copyFailed, err: fmt.Errorf("%s → %s: %w (the destination holds part of the copy)", from, to, err)}
	}
	fmt.Fprintf(out, "copied %s → %s\n", from, to)
	for _, k := range matchbox.Kinds() {
		fmt.Fprintf(out, "%-12s %d\n", kindPlural(k), res.Kinds[k])
	}
	fmt.Fprintf(out, "%-12s %d\n%-12s %d\n%-12s %d\n%-12s %d\n%-12s %d\n",
		"machines", res.Machines, "bmc-records", res.BMCs, "inventories", res.Inventories, "events", res.Events, "leases", res.Leases)
	return nil
}

// resolveSide validates one side's flags; errors name the side's flags.
func resolveSide(flag string, f location.Flags) (location.Location, error) {
	loc, err := location.Resolve(f)
	if err != nil {
		// Resolve names serve's flags (--store, --etcd-ca-file): name
		// this side's instead.
		side := strings.TrimPrefix(flag, "--")
		msg := strings.ReplaceAll(err.Error(), "--etcd-", "--"+side+"-etcd-")
		msg = strings.ReplaceAll(msg, "--store", flag)
		return location.Location{}, errors.New(msg)
	}
	return loc, nil
}

// contents says what a store holds ("" when it is empty): catalog objects,
// machines and leases.
func contents(ctx context.Context, s backend) (string, error) {
	var held []string
	err := s.ViewCatalog(ctx, func(c store.CatalogTx) error {
		n := 0
		for _, k := range matchbox.Kinds() {
			l, err := c.List(k)
			if err != nil {
				return err
			}
			n += len(l)
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%d catalog objects", n))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read the catalog: %w", err)
	}
	ms, err := s.ListMachines(ctx, store.MachineFilter{Limit: 1})
	if err != nil {
		return "", fmt.Errorf("list machines: %w", err)
	}
	if len(ms) > 0 {
		held = append(held, "machines")
	}
	leases, err := s.LoadLeases(ctx)
	if err != nil {
		return "", fmt.Errorf("read leases: %w", err)
	}
	if len(leases) > 0 {
		held = append(held, fmt.Sprintf("%d leases", len(leases)))
	}
	return strings.Join(held, ", "), nil
}

// kindPlural names a kind's objects in the copy's counts.
func kindPlural(k matchbox.Kind) string {
	switch k {
	case matchbox.KindProfile:
		return "profiles"
	case matchbox.KindGroup:
		return "groups"
	case matchbox.TemplateIgnition:
		return "ignition"
	case matchbox.TemplateGeneric:
		return "generic"
	}
	return string(k)
}
