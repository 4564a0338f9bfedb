package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"matchbox/matchbox"
	"matchbox/store"
)

// checkDataDir refuses a --data-dir that does not exist or is not a
// directory: a typo or an unmounted volume must not start an empty catalog.
func checkDataDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--data-dir %s does not exist (a typo, or a volume not mounted?); create it first, or name the catalog's directory", dir)
	}
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--data-dir %s is not a directory", dir)
	}
	return nil
}

// pruneGuard bounds what one data-directory import may delete.
type pruneGuard struct {
	allow bool    // --allow-prune: no bound
	limit float64 // share of the file-imported objects one import may delete
}

// check refuses deleting every file-imported object, or more than the
// limit's share of them, unless allowed.
func (g pruneGuard) check(deleted, imported int) error {
	if g.allow || deleted == 0 {
		return nil
	}
	if deleted == imported {
		return fmt.Errorf("the import would delete all %d objects imported from files before (an empty or wrong --data-dir?); start with --allow-prune if that is meant", imported)
	}
	if float64(deleted) > g.limit*float64(imported) {
		return fmt.Errorf("the import would delete %d of %d objects imported from files, more than --import-prune-limit %.2f allows; start with --allow-prune if that is meant", deleted, imported, g.limit)
	}
	return nil
}

// importPrunes lists the objects an import of objs under scope would
// delete (stored objects of that scope, or imported before scopes, from a
// file that objs no longer provide), as "kind id", and counts those
// file-imported objects stored now.
func importPrunes(ctx context.Context, st store.CatalogStore, scope string, objs []*store.Object) ([]string, int, error) {
	keep := map[string]bool{}
	for _, o := range objs {
		keep[string(o.Kind)+" "+objectID(o)] = true
	}
	var pruned []string
	imported := 0
	err := st.ViewCatalog(ctx, func(c store.CatalogTx) error {
		for _, kind := range []matchbox.Kind{matchbox.KindProfile, matchbox.KindGroup, matchbox.TemplateIgnition, matchbox.TemplateGeneric} {
			list, err := c.List(kind)
			if err != nil {
				return err
			}
			for _, o := range list {
				if o.Source == "" || (o.Scope != "" && o.Scope != scope) {
					continue
				}
				imported++
				if name := string(kind) + " " + o.ID; !keep[name] {
					pruned = append(pruned, fmt.Sprintf("%s %q (from %s)", kind, o.ID, o.Source))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read the catalog: %w", err)
	}
	return pruned, imported, nil
}

func objectID(o *store.Object) string {
	switch {
	case o.Profile != nil:
		return o.Profile.ID
	case o.Group != nil:
		return o.Group.ID
	case o.Template != nil:
		return o.Template.Name
	}
	return o.ID
}
