package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"matchbox/api"
	"matchbox/audit"
)

func newAuditCommand() *cobra.Command {
	var output, object, actor, since string
	cmd := &cobra.Command{
		Use:   "audit [--object KIND[/ID]] [--actor NAME] [--since DURATION]",
		Short: "List the audit trail: who changed which object, when, from which version to which",
		Long: "List the audit records of catalog, machine, BMC and API token changes, oldest first.\n" +
			"KIND is profile, group, ignition, generic, machine or token; --since takes a\n" +
			"duration back from now (24h) or an RFC 3339 time.",
		Args: cobra.NoArgs,
	}
	co := addClientFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	cmd.Flags().StringVar(&object, "object", "", "only the records of a kind, or of one object (kind/id)")
	cmd.Flags().StringVar(&actor, "actor", "", "only the records of this actor (a token's name, a certificate subject, data-dir, lifecycle, cli)")
	cmd.Flags().StringVar(&since, "since", "", "only the records since this long ago (24h), or since an RFC 3339 time")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := outputFormat(output); err != nil {
			return err
		}
		q := url.Values{}
		if object != "" {
			q.Set("object", object)
		}
		if actor != "" {
			q.Set("actor", actor)
		}
		if since != "" {
			// Resolved here, so that paging does not move the window.
			t, err := api.ParseSince(since, time.Now())
			if err != nil {
				return fmt.Errorf("--since %q: want a duration (24h) or an RFC 3339 time", since)
			}
			q.Set("since", t.UTC().Format(time.RFC3339Nano))
		}
		recs, err := co.client().Audit(cmd.Context(), q)
		if err != nil {
			return err
		}
		if output != "table" {
			return writeStructured(cmd.OutOrStdout(), output, recs)
		}
		return printAudit(cmd.OutOrStdout(), recs)
	}
	return cmd
}

// printAudit writes audit records as a table.
func printAudit(w io.Writer, recs []audit.Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tVERSION\tDETAIL")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", r.ID, r.At.UTC().Format(time.RFC3339), r.Actor, r.Action, r.Kind, r.Object, versions(r), dash(r.Detail))
	}
	return tw.Flush()
}

// versions words a record's versions: 3→4, -→1 (created), 4→- (deleted).
func versions(r audit.Record) string {
	v := func(n int64) string {
		if n == 0 {
			return "-"
		}
		return strconv.FormatInt(n, 10)
	}
	if r.VersionBefore == 0 && r.VersionAfter == 0 {
		return "-"
	}
	return v(r.VersionBefore) + "->" + v(r.VersionAfter)
}
