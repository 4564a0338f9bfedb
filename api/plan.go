package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"

	"matchbox/api/wire"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/store"
)

// catalogKinds are the catalog kinds in plan order: templates first, as
// profiles name them, then profiles, which groups name.
var catalogKinds = [...]matchbox.Kind{matchbox.TemplateIgnition, matchbox.TemplateGeneric, matchbox.KindProfile, matchbox.KindGroup}

// objectKey identifies a catalog object.
type objectKey struct {
	kind matchbox.Kind
	id   string
}

// operation is one write an apply makes.
type operation struct {
	action  string
	obj     *store.Object // create and update
	key     objectKey
	version int64 // stored version: the precondition of updates and deletes
}

// planned is a plan and what applying it writes.
type planned struct {
	plan    wire.Plan
	ops     []operation
	catalog matchbox.Catalog // the catalog after the apply
}

// desiredObjects turns a decoded bundle into store objects, refusing an
// object defined by two files.
func desiredObjects(c *datadir.Content) (map[objectKey]*store.Object, map[objectKey]string, error) {
	objs := map[objectKey]*store.Object{}
	files := map[objectKey]string{}
	var problems []string
	add := func(o *store.Object, file string) {
		k := objectKey{o.Kind, o.ID}
		if prev, dup := files[k]; dup {
			problems = append(problems, fmt.Sprintf("%s: %s %q is also defined in %s", file, o.Kind, o.ID, prev))
			return
		}
		objs[k], files[k] = o, file
	}
	for _, o := range store.ObjectsOf(c) {
		file := o.Source
		// Applied objects belong to the API, not to a data-directory
		// file: an import never deletes them.
		o.Source = ""
		add(o, file)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		e := errorf(http.StatusBadRequest, CodeInvalidBundle, "", "invalid bundle: %s", problems[0])
		e.detail.Problems = problems
		return nil, nil, e
	}
	return objs, files, nil
}

// makePlan compares the bundle with the current catalog (read through tx).
func makePlan(tx store.CatalogTx, req *wire.PlanRequest, content *datadir.Content) (*planned, error) {
	desired, files, err := desiredObjects(content)
	if err != nil {
		return nil, err
	}
	current := map[objectKey]*store.Object{}
	var keys []objectKey
	for _, kind := range catalogKinds {
		objs, err := tx.List(kind)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			k := objectKey{kind, o.ID}
			current[k] = o
			keys = append(keys, k)
		}
	}
	for k := range desired {
		if _, ok := current[k]; !ok {
			keys = append(keys, k)
		}
	}
	rank := map[matchbox.Kind]int{}
	for i, k := range catalogKinds {
		rank[k] = i
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return rank[keys[i].kind] < rank[keys[j].kind]
		}
		return keys[i].id < keys[j].id
	})

	p := &planned{plan: wire.Plan{Changes: []wire.Change{}, Warnings: append([]string(nil), content.Warnings...)}}
	for _, k := range keys {
		cur, have := current[k]
		want, wanted := desired[k]
		ch := wire.Change{Kind: string(k.kind), ID: k.id, File: files[k]}
		var keep *store.Object
		switch {
		case wanted && !have:
			ch.Action = wire.ActionCreate
			p.ops = append(p.ops, operation{action: ch.Action, obj: want, key: k})
			keep = want
		case wanted && have:
			ch.Version = cur.Version
			diff, err := diffObjects(cur, want)
			if err != nil {
				return nil, err
			}
			if len(diff) == 0 {
				ch.Action = wire.ActionUnchanged
				keep = cur
			} else {
				ch.Action, ch.Diff = wire.ActionUpdate, diff
				p.ops = append(p.ops, operation{action: ch.Action, obj: want, key: k, version: cur.Version})
				keep = want
			}
		case !wanted && req.Prune:
			ch.Action, ch.Version, ch.Reason = wire.ActionDelete, cur.Version, pruneReason(cur)
			p.ops = append(p.ops, operation{action: ch.Action, key: k, version: cur.Version})
		default:
			keep = cur // not in the bundle, kept
		}
		if keep != nil {
			addToCatalog(&p.catalog, keep)
		}
		if ch.Action == "" {
			continue
		}
		switch ch.Action {
		case wire.ActionCreate:
			p.plan.Summary.Create++
		case wire.ActionUpdate:
			p.plan.Summary.Update++
		case wire.ActionDelete:
			p.plan.Summary.Delete++
		default:
			p.plan.Summary.Unchanged++
		}
		p.plan.Changes = append(p.plan.Changes, ch)
	}
	p.plan.PlanID = planID(req, keys, current)
	return p, nil
}

// pruneReason says why a prune deletes a stored object the bundle does not
// hold: what the object is, and where it came from.
func pruneReason(o *store.Object) string {
	shipped := (o.Profile != nil && o.Profile.Shipped) || (o.Group != nil && o.Group.Shipped)
	var what string
	switch {
	case shipped && o.Source != "":
		what = "shipped default, imported from data-dir file " + o.Source
	case shipped:
		what = "shipped default"
	case o.Source != "":
		what = "imported from data-dir file " + o.Source
	default:
		what = "written through the API"
	}
	return what + "; not in the bundle"
}

// planID digests what a plan depends on: the bundle, the prune flag and the
// version of every stored catalog object.
func planID(req *wire.PlanRequest, keys []objectKey, current map[objectKey]*store.Object) string {
	h := sha256.New()
	fmt.Fprintf(h, "prune=%t\n", req.Prune)
	names := make([]string, 0, len(req.Files))
	for n := range req.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "file %q %d\n%s\n", n, len(req.Files[n]), req.Files[n])
	}
	for _, k := range keys {
		if o, ok := current[k]; ok {
			fmt.Fprintf(h, "object %s %q %d\n", k.kind, k.id, o.Version)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func addToCatalog(c *matchbox.Catalog, o *store.Object) {
	switch {
	case o.Profile != nil:
		c.Profiles = append(c.Profiles, *o.Profile)
	case o.Group != nil:
		c.Groups = append(c.Groups, *o.Group)
	case o.Template != nil:
		c.Templates = append(c.Templates, *o.Template)
	}
}

// diffObjects lists the fields that differ between two versions of an
// object.
func diffObjects(old, new *store.Object) ([]wire.FieldChange, error) {
	a, err := genericValue(objectValue(old))
	if err != nil {
		return nil, err
	}
	b, err := genericValue(objectValue(new))
	if err != nil {
		return nil, err
	}
	var out []wire.FieldChange
	diffValues("", a, b, &out)
	return out, nil
}

// genericValue turns v into JSON's maps, slices and scalars.
func genericValue(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode for diff: %w", err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode for diff: %w", err)
	}
	return out, nil
}

// diffValues appends the differences of a and b under path.
func diffValues(path string, a, b any, out *[]wire.FieldChange) {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	if (aIsMap || a == nil) && (bIsMap || b == nil) && (aIsMap || bIsMap) {
		keys := make([]string, 0, len(am)+len(bm))
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diffValues(p, am[k], bm[k], out)
		}
		return
	}
	as, aIsSlice := a.([]any)
	bs, bIsSlice := b.([]any)
	if (aIsSlice || a == nil) && (bIsSlice || b == nil) && (aIsSlice || bIsSlice) {
		for i := 0; i < max(len(as), len(bs)); i++ {
			var x, y any
			if i < len(as) {
				x = as[i]
			}
			if i < len(bs) {
				y = bs[i]
			}
			diffValues(path+"["+strconv.Itoa(i)+"]", x, y, out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, wire.FieldChange{Path: path, Old: a, New: b})
	}
}

// readPlanRequest decodes and checks a plan or apply request.
func readPlanRequest(r *http.Request) (*wire.PlanRequest, *datadir.Content, error) {
	format, err := bodyFormat(r, false)
	if err != nil {
		return nil, nil, err
	}
	if format != formatJSON {
		return nil, nil, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "Content-Type", `plan and apply take a JSON bundle: {"files": {...}} as application/json`)
	}
	req, err := decodePlanRequest(r.Body)
	if err != nil {
		return nil, nil, err
	}
	content, err := DecodeBundle(req.Bundle)
	if err != nil {
		return nil, nil, err
	}
	return req, content, nil
}

func (a *API) plan(w http.ResponseWriter, r *http.Request) error {
	req, content, err := readPlanRequest(r)
	if err != nil {
		return err
	}
	var p *planned
	err = a.cfg.Store.ViewCatalog(r.Context(), func(tx store.CatalogTx) error {
		var err error
		p, err = makePlan(tx, req, content)
		return err
	})
	if err != nil {
		return err
	}
	snap, err := matchbox.Build(p.catalog, a.cfg.ParseFact)
	if err == nil {
		err = matchbox.NoNewDangling(a.cfg.Store.Snapshot(), snap)
	}
	if err != nil {
		return err
	}
	p.plan.Warnings = append(p.plan.Warnings, snap.Warnings()...)
	p.plan.Warnings = append(p.plan.Warnings, planMissingWarnings(snap)...)
	writeJSON(w, http.StatusOK, p.plan)
	return nil
}

func (a *API) apply(w http.ResponseWriter, r *http.Request) error {
	req, content, err := readPlanRequest(r)
	if err != nil {
		return err
	}
	p, snap, err := a.applyPlan(r.Context(), req, content)
	if err != nil {
		return err
	}
	p.plan.Applied = true
	p.plan.Warnings = append(p.plan.Warnings, snap.Warnings()...)
	p.plan.Warnings = append(p.plan.Warnings, planMissingWarnings(snap)...)
	writeJSON(w, http.StatusOK, p.plan)
	return nil
}

// applyPlan makes the plan and writes it in one catalog transaction: all of
// it or, when the result would be invalid or the plan is not the one the
// client reviewed, nothing.
func (a *API) applyPlan(ctx context.Context, req *wire.PlanRequest, content *datadir.Content) (*planned, *matchbox.Snapshot, error) {
	var p *planned
	snap, err := a.cfg.Store.UpdateCatalog(ctx, func(tx store.CatalogTx) error {
		var err error
		if p, err = makePlan(tx, req, content); err != nil {
			return err
		}
		if req.PlanID != "" && req.PlanID != p.plan.PlanID {
			return errorf(http.StatusPreconditionFailed, CodePlanStale, "plan_id",
				"the catalog or the bundle changed since plan %s was made (now %s): plan again, review, then apply", short(req.PlanID), short(p.plan.PlanID))
		}
		for _, op := range p.ops {
			switch op.action {
			case wire.ActionCreate:
				_, err = tx.Put(op.obj, mustNotExist)
			case wire.ActionUpdate:
				_, err = tx.Put(op.obj, op.version)
			case wire.ActionDelete:
				err = tx.Delete(op.key.kind, op.key.id, op.version)
			}
			if err != nil {
				return fmt.Errorf("%s %s %q: %w", op.action, op.key.kind, op.key.id, err)
			}
		}
		// A bundle is a whole: it may not leave references dangling.
		after, err := matchbox.Build(p.catalog, a.cfg.ParseFact)
		if err != nil {
			return err
		}
		return matchbox.NoNewDangling(a.cfg.Store.Snapshot(), after)
	})
	if err != nil {
		return nil, nil, err
	}
	return p, snap, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
