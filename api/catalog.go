package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"gopkg.in/yaml.v3"

	"matchbox/api/wire"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/store"
)

// catalogHandlers serve one kind of catalog object; for templates (kind
// empty) the kind comes from the {kind} path variable.
type catalogHandlers struct {
	a    *API
	kind matchbox.Kind
}

// kindOf returns the kind a request is about. For templates it is the
// {kind} path variable, or "" for the list of every template.
func (c catalogHandlers) kindOf(r *http.Request) (matchbox.Kind, error) {
	if c.kind != "" {
		return c.kind, nil
	}
	k, ok := mux.Vars(r)["kind"]
	if !ok {
		k = r.URL.Query().Get("kind")
		if k == "" {
			return "", nil
		}
	}
	switch matchbox.Kind(k) {
	case matchbox.TemplateIgnition, matchbox.TemplateGeneric:
		return matchbox.Kind(k), nil
	}
	return "", errorf(http.StatusNotFound, CodeNotFound, "kind", "template kind %q does not exist: use ignition or generic", k)
}

func objectItem(o *store.Object) wire.Item {
	return wire.Item{ID: o.ID, Version: o.Version, Source: o.Source, Profile: o.Profile, Group: o.Group, Template: o.Template}
}

func objectValue(o *store.Object) any {
	switch {
	case o.Profile != nil:
		return o.Profile
	case o.Group != nil:
		return o.Group
	}
	return o.Template
}

func (c catalogHandlers) list(w http.ResponseWriter, r *http.Request) error {
	kind, err := c.kindOf(r)
	if err != nil {
		return err
	}
	limit, after, err := page(r, 1000, 1000)
	if err != nil {
		return err
	}
	kinds := []matchbox.Kind{kind}
	if kind == "" {
		kinds = []matchbox.Kind{matchbox.TemplateIgnition, matchbox.TemplateGeneric}
		if after != "" && !strings.Contains(after, "/") {
			return errorf(http.StatusBadRequest, CodeBadRequest, "after", "after %q: the list of every template pages with after=<kind>/<name>", after)
		}
	}
	profileFilter := r.URL.Query().Get("profile")
	var objs []*store.Object
	err = c.a.cfg.Store.ViewCatalog(r.Context(), func(tx store.CatalogTx) error {
		for _, k := range kinds {
			found, err := tx.List(k)
			if err != nil {
				return err
			}
			objs = append(objs, found...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every catalog list names the catalog's dangling references.
	addWarnings(w, danglingWarnings(c.a.cfg.Store.Snapshot().Dangling()))
	out := wire.List{Items: []wire.Item{}}
	for _, o := range objs {
		key := o.ID
		if kind == "" {
			key = string(o.Kind) + "/" + o.ID
		}
		if after != "" && key <= after {
			continue
		}
		if profileFilter != "" && (o.Group == nil || o.Group.Profile != profileFilter) {
			continue
		}
		if len(out.Items) == limit {
			out.Next = cursorOf(out.Items[len(out.Items)-1], kind == "")
			break
		}
		out.Items = append(out.Items, objectItem(o))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func cursorOf(it wire.Item, withKind bool) string {
	if withKind && it.Template != nil {
		return string(it.Template.Kind) + "/" + it.ID
	}
	return it.ID
}

func (c catalogHandlers) get(w http.ResponseWriter, r *http.Request) error {
	kind, err := c.kindOf(r)
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	var obj *store.Object
	err = c.a.cfg.Store.ViewCatalog(r.Context(), func(tx store.CatalogTx) error {
		var err error
		obj, err = tx.Get(kind, id)
		return err
	})
	if err != nil {
		return err
	}
	// The object's own dangling references (a group's missing profile, a
	// profile's missing templates).
	prefix := fmt.Sprintf("%s %q: ", obj.Kind, obj.ID)
	var own []string
	for _, d := range c.a.cfg.Store.Snapshot().Dangling() {
		if strings.HasPrefix(d, prefix) {
			own = append(own, d)
		}
	}
	addWarnings(w, danglingWarnings(own))
	w.Header().Set("ETag", etag(obj.Version))
	writeJSON(w, http.StatusOK, objectValue(obj))
	return nil
}

// addWarnings adds a Warning header (code 299) for each warning.
func addWarnings(w http.ResponseWriter, warns []string) {
	for _, warn := range warns {
		w.Header().Add("Warning", fmt.Sprintf("299 matchbox %q", warn))
	}
}

func (c catalogHandlers) create(w http.ResponseWriter, r *http.Request) error {
	kind, err := c.kindOf(r)
	if err != nil {
		return err
	}
	obj, warns, err := decodeObject(r, kind, "")
	if err != nil {
		return err
	}
	return c.write(w, r, obj, warns, mustNotExist)
}

func (c catalogHandlers) replace(w http.ResponseWriter, r *http.Request) error {
	kind, err := c.kindOf(r)
	if err != nil {
		return err
	}
	ifVersion, err := precondition(r)
	if err != nil {
		return err
	}
	obj, warns, err := decodeObject(r, kind, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return c.write(w, r, obj, warns, ifVersion)
}

// write stores obj in one catalog transaction and answers with it.
func (c catalogHandlers) write(w http.ResponseWriter, r *http.Request, obj *store.Object, warns []string, ifVersion int64) error {
	version, created, dangling, snap, err := putObject(r.Context(), c.a.cfg.Store, obj, ifVersion)
	if err != nil {
		return err
	}
	warns = append(warns, danglingWarnings(dangling)...)
	addWarnings(w, append(warns, writeMissingWarnings(snap, obj)...))
	w.Header().Set("ETag", etag(version))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", objectPath(obj.Kind, obj.ID))
	}
	writeJSON(w, status, objectValue(obj))
	return nil
}

// objectPath is the API path of a catalog object.
func objectPath(kind matchbox.Kind, id string) string {
	switch kind {
	case matchbox.TemplateIgnition, matchbox.TemplateGeneric:
		return Prefix + "/templates/" + string(kind) + "/" + id
	}
	return Prefix + "/" + string(kind) + "s/" + id
}

// putObject writes obj under the precondition ifVersion (0, a version,
// mustExist or mustNotExist). It returns the new version, whether the
// object was created, and the dangling references the write introduced
// (stored: single-object writes come in any order), and the snapshot it
// made.
func putObject(ctx context.Context, st Catalog, obj *store.Object, ifVersion int64) (int64, bool, []string, *matchbox.Snapshot, error) {
	var version int64
	var created bool
	var before *matchbox.Snapshot
	snap, err := st.UpdateCatalog(ctx, func(tx store.CatalogTx) error {
		before = st.Snapshot()
		cur, err := tx.Get(obj.Kind, obj.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if ifVersion > 0 || ifVersion == mustExist {
				return fmt.Errorf("%s %q does not exist, If-Match cannot hold: %w", obj.Kind, obj.ID, store.ErrVersionConflict)
			}
			created = true
		case err != nil:
			return err
		case ifVersion == mustExist:
			ifVersion = cur.Version
		}
		version, err = tx.Put(obj, ifVersion)
		return err
	})
	if err != nil {
		return 0, false, nil, nil, err
	}
	return version, created, snap.NewDangling(before), snap, nil
}

// deleteObject removes an object under the precondition ifVersion (0 or a
// version). It returns the dangling references the removal introduced
// (groups still naming a deleted profile, say): stored, as for putObject.
func deleteObject(ctx context.Context, st Catalog, kind matchbox.Kind, id string, ifVersion int64) ([]string, error) {
	var before *matchbox.Snapshot
	snap, err := st.UpdateCatalog(ctx, func(tx store.CatalogTx) error {
		before = st.Snapshot()
		return tx.Delete(kind, id, ifVersion)
	})
	if err != nil {
		return nil, err
	}
	return snap.NewDangling(before), nil
}

// deletedProfileWarning names the groups that still name profile id once
// it is deleted: the deletion is done, and those groups' machines are
// answered 404 until a profile of that id is written again.
func deletedProfileWarning(snap *matchbox.Snapshot, id string) string {
	var users []string
	for _, g := range snap.Groups() {
		if g.Profile == id {
			users = append(users, strconv.Quote(g.ID))
		}
	}
	slices.Sort(users)
	what := "group " + strings.Join(users, "") + " still names it"
	if len(users) != 1 {
		what = "groups " + strings.Join(users, ", ") + " still name it"
	}
	return fmt.Sprintf("dangling reference: profile %q is deleted and %s: the machines selected are answered 404 until profile %q is written again or the groups name another", id, what, id)
}

// danglingWarnings words dangling references as warnings.
func danglingWarnings(refs []string) []string {
	out := make([]string, len(refs))
	for i, d := range refs {
		out[i] = "dangling reference: " + d + " (stored; machines it selects are answered 404 until it is resolved)"
	}
	return out
}

func (c catalogHandlers) remove(w http.ResponseWriter, r *http.Request) error {
	kind, err := c.kindOf(r)
	if err != nil {
		return err
	}
	ifVersion, err := precondition(r)
	if err != nil {
		return err
	}
	if ifVersion < 0 {
		ifVersion = 0 // If-Match: * on a delete: the object must exist, as it must anyway
	}
	id := mux.Vars(r)["id"]
	dangling, err := deleteObject(r.Context(), c.a.cfg.Store, kind, id, ifVersion)
	if err != nil {
		return err
	}
	if kind == matchbox.KindProfile && len(dangling) > 0 {
		addWarnings(w, []string{deletedProfileWarning(c.a.cfg.Store.Snapshot(), id)})
	} else {
		addWarnings(w, danglingWarnings(dangling))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeObject reads a catalog object from the request body. pathID is the
// id the path names ("" for a create); a body naming another id is refused.
func decodeObject(r *http.Request, kind matchbox.Kind, pathID string) (*store.Object, []string, error) {
	isTemplate := kind == matchbox.TemplateIgnition || kind == matchbox.TemplateGeneric
	data, format, err := readBody(r, isTemplate)
	if err != nil {
		return nil, nil, err
	}
	const file = "request body"
	obj := &store.Object{Kind: kind, ID: pathID}
	var warns []string
	var bodyID string
	switch kind {
	case matchbox.KindProfile:
		p, w, err := datadir.DecodeProfile(data, file, pathID)
		if err != nil {
			return nil, w, err
		}
		obj.Profile, warns, bodyID = p, w, p.ID
	case matchbox.KindGroup:
		g, w, err := datadir.DecodeGroup(data, file, pathID)
		if err != nil {
			return nil, w, err
		}
		obj.Group, warns, bodyID = g, w, g.ID
	default:
		t := &matchbox.Template{}
		if format == formatText {
			t.Content = string(data)
		} else if err := decodeStrict(data, format, t); err != nil {
			return nil, nil, err
		}
		if t.Kind != "" && t.Kind != kind {
			return nil, nil, errorf(http.StatusBadRequest, CodeInvalidBody, "kind", "field kind %q differs from the kind %q the path names", t.Kind, kind)
		}
		t.Kind = kind
		if t.Name == "" {
			t.Name = pathID
		}
		if err := matchbox.ValidateTemplateName(t.Name); err != nil {
			return nil, nil, errorf(http.StatusBadRequest, CodeInvalidBody, "name", "field name: %v", err)
		}
		obj.Template, bodyID = t, t.Name
	}
	if pathID != "" && bodyID != pathID {
		field := "id"
		if isTemplate {
			field = "name"
		}
		return nil, nil, errorf(http.StatusBadRequest, CodeInvalidBody, field, "field %s %q differs from the %q the path names", field, bodyID, pathID)
	}
	obj.ID = bodyID
	return obj, warns, nil
}

// decodeStrict decodes a JSON or YAML document into v, refusing unknown
// fields.
func decodeStrict(data []byte, format string, v any) error {
	if format == formatJSON {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return errorf(http.StatusBadRequest, CodeInvalidBody, jsonField(err), "request body: invalid JSON: %v", err)
		}
		if dec.More() {
			return errorf(http.StatusBadRequest, CodeInvalidBody, "", "request body: unexpected data after the JSON document")
		}
		return nil
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, CodeInvalidBody, "", "request body: invalid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// jsonField names the field a JSON decoding error is about, if it can.
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
	}
	return ""
}
