package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"matchbox/api/client"
	"matchbox/api/wire"
)

// isTerminal reports whether the file descriptor is a terminal.
func isTerminal(fd uintptr) bool { return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd) }

// bundleOptions are the flags of plan and apply.
type bundleOptions struct {
	path  string
	prune bool
}

func addBundleFlags(cmd *cobra.Command) *bundleOptions {
	o := &bundleOptions{}
	cmd.Flags().StringVarP(&o.path, "file", "f", "", "data directory (profiles/, groups/, ignition/, generic/) or one profile or group file")
	cmd.Flags().BoolVar(&o.prune, "prune", false, "delete catalog objects the directory does not hold")
	cmd.MarkFlagRequired("file")
	return o
}

func (o *bundleOptions) read() (wire.Bundle, error) {
	b, isDir, err := client.ReadBundle(o.path)
	if err != nil {
		return b, err
	}
	if o.prune && !isDir {
		return b, fmt.Errorf("--prune needs a directory: with the file %s alone it would delete every other object", o.path)
	}
	return b, nil
}

func newPlanCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan -f DIR|FILE [--prune]",
		Short: "Show what apply would change (exit 0: no changes, 2: changes, 1: error)",
		Args:  cobra.NoArgs,
	}
	co := addClientFlags(cmd)
	bo := addBundleFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		b, err := bo.read()
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		p, err := co.client().Plan(cmd.Context(), b, bo.prune)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		printPlan(cmd.OutOrStdout(), cmd.ErrOrStderr(), p)
		if p.HasChanges() {
			return &exitError{code: 2}
		}
		return nil
	}
	return cmd
}

func newApplyCommand() *cobra.Command {
	var autoApprove bool
	cmd := &cobra.Command{
		Use:   "apply -f DIR|FILE [--prune] [--auto-approve]",
		Short: "Show the plan, ask, and apply it in one transaction",
		Args:  cobra.NoArgs,
	}
	co := addClientFlags(cmd)
	bo := addBundleFlags(cmd)
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "apply without asking")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		b, err := bo.read()
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		c := co.client()
		p, err := c.Plan(cmd.Context(), b, bo.prune)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		printPlan(out, cmd.ErrOrStderr(), p)
		if !p.HasChanges() {
			return nil
		}
		if !autoApprove {
			in := cmd.InOrStdin()
			if !stdinIsTerminal(in) {
				return &exitError{code: 1, err: errors.New("stdin is not a terminal: pass --auto-approve to apply without asking")}
			}
			fmt.Fprint(out, "\nApply these changes? Only 'yes' will be accepted: ")
			answer, err := bufio.NewReader(in).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return &exitError{code: 1, err: fmt.Errorf("read answer: %w", err)}
			}
			if strings.TrimSpace(answer) != "yes" {
				return &exitError{code: 1, err: errors.New("apply cancelled")}
			}
		}
		done, err := c.Apply(cmd.Context(), b, bo.prune, p.PlanID)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(out, "\nApply complete! %d created, %d updated, %d deleted.\n", done.Summary.Create, done.Summary.Update, done.Summary.Delete)
		return nil
	}
	return cmd
}

// printPlan writes a plan the way Terraform does: one line per change, the
// changed fields of updates indented below, then a summary. Warnings go to
// errw.
func printPlan(w, errw io.Writer, p *wire.Plan) {
	for _, warn := range p.Warnings {
		fmt.Fprintf(errw, "Warning: %s\n", warn)
	}
	if !p.HasChanges() {
		fmt.Fprintf(w, "No changes. The catalog matches the bundle (%d unchanged).\n", p.Summary.Unchanged)
		return
	}
	for _, ch := range p.Changes {
		switch ch.Action {
		case wire.ActionCreate:
			fmt.Fprintf(w, "  + create %s %s\n", ch.Kind, ch.ID)
		case wire.ActionDelete:
			if ch.Reason != "" {
				fmt.Fprintf(w, "  - delete %s %s (%s)\n", ch.Kind, ch.ID, ch.Reason)
			} else {
				fmt.Fprintf(w, "  - delete %s %s\n", ch.Kind, ch.ID)
			}
		case wire.ActionUpdate:
			fmt.Fprintf(w, "  ~ update %s %s\n", ch.Kind, ch.ID)
			for _, d := range ch.Diff {
				switch {
				case d.Old == nil:
					fmt.Fprintf(w, "      + %s: %s\n", d.Path, formatValue(d.New))
				case d.New == nil:
					fmt.Fprintf(w, "      - %s: %s\n", d.Path, formatValue(d.Old))
				default:
					fmt.Fprintf(w, "      ~ %s: %s → %s\n", d.Path, formatValue(d.Old), formatValue(d.New))
				}
			}
		}
	}
	fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to delete.\n", p.Summary.Create, p.Summary.Update, p.Summary.Delete)
}

// formatValue shows a value as JSON, shortened to one line of at most 80
// characters.
func formatValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if r := []rune(s); len(r) > 80 {
		s = string(r[:77]) + "..."
	}
	return s
}
