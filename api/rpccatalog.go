package api

import (
	"context"
	"errors"

	"matchbox/api/rpc"
	"matchbox/matchbox"
	"matchbox/store"
)

// RPCCatalog gives v0.11's gRPC services (package rpc) the catalog through
// the REST API's write path: each Put is the unconditional PUT of one object
// and each Delete the unconditional DELETE, one transaction each, validated
// the same way. Dangling references are stored, as v0.11 stored them; the
// store logs each one a write introduces.
type RPCCatalog struct {
	// Store holds the catalog.
	Store Catalog
}

var _ rpc.Catalog = RPCCatalog{}

// notFound marks a store error about a missing object as rpc.ErrNotFound
// too.
type notFound struct{ err error }

func (e notFound) Error() string        { return e.err.Error() }
func (e notFound) Unwrap() error        { return e.err }
func (e notFound) Is(target error) bool { return target == rpc.ErrNotFound }

// storageFailure marks a store's storage failure as rpc's.
type storageFailure struct{ err, mark error }

func (e storageFailure) Error() string        { return e.err.Error() }
func (e storageFailure) Unwrap() error        { return e.err }
func (e storageFailure) Is(target error) bool { return target == e.mark }

func rpcError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound{err}
	case errors.Is(err, store.ErrStorageFull):
		return storageFailure{err, rpc.ErrStorageFull}
	case errors.Is(err, store.ErrUnavailable):
		return storageFailure{err, rpc.ErrUnavailable}
	}
	return err
}

func (c RPCCatalog) get(ctx context.Context, kind matchbox.Kind, id string) (*store.Object, error) {
	var obj *store.Object
	err := c.Store.ViewCatalog(ctx, func(tx store.CatalogTx) error {
		var err error
		obj, err = tx.Get(kind, id)
		return err
	})
	return obj, rpcError(err)
}

func (c RPCCatalog) list(ctx context.Context, kind matchbox.Kind) ([]*store.Object, error) {
	var objs []*store.Object
	err := c.Store.ViewCatalog(ctx, func(tx store.CatalogTx) error {
		var err error
		objs, err = tx.List(kind)
		return err
	})
	return objs, rpcError(err)
}

func (c RPCCatalog) put(ctx context.Context, obj *store.Object) error {
	_, _, _, _, err := putObject(ctx, c.Store, obj, 0)
	return rpcError(err)
}

func (c RPCCatalog) remove(ctx context.Context, kind matchbox.Kind, id string) error {
	_, err := deleteObject(ctx, c.Store, kind, id, 0)
	return rpcError(err)
}

// Profile returns a profile by id.
func (c RPCCatalog) Profile(ctx context.Context, id string) (*matchbox.Profile, error) {
	obj, err := c.get(ctx, matchbox.KindProfile, id)
	if err != nil {
		return nil, err
	}
	return obj.Profile, nil
}

// Profiles returns every profile, ordered by id.
func (c RPCCatalog) Profiles(ctx context.Context) ([]*matchbox.Profile, error) {
	objs, err := c.list(ctx, matchbox.KindProfile)
	out := make([]*matchbox.Profile, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Profile)
	}
	return out, err
}

// PutProfile creates or replaces a profile.
func (c RPCCatalog) PutProfile(ctx context.Context, p *matchbox.Profile) error {
	return c.put(ctx, &store.Object{Kind: matchbox.KindProfile, ID: p.ID, Profile: p})
}

// DeleteProfile removes a profile.
func (c RPCCatalog) DeleteProfile(ctx context.Context, id string) error {
	return c.remove(ctx, matchbox.KindProfile, id)
}

// Group returns a group by id.
func (c RPCCatalog) Group(ctx context.Context, id string) (*matchbox.Group, error) {
	obj, err := c.get(ctx, matchbox.KindGroup, id)
	if err != nil {
		return nil, err
	}
	return obj.Group, nil
}

// Groups returns every group, ordered by id.
func (c RPCCatalog) Groups(ctx context.Context) ([]*matchbox.Group, error) {
	objs, err := c.list(ctx, matchbox.KindGroup)
	out := make([]*matchbox.Group, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Group)
	}
	return out, err
}

// PutGroup creates or replaces a group.
func (c RPCCatalog) PutGroup(ctx context.Context, g *matchbox.Group) error {
	return c.put(ctx, &store.Object{Kind: matchbox.KindGroup, ID: g.ID, Group: g})
}

// DeleteGroup removes a group.
func (c RPCCatalog) DeleteGroup(ctx context.Context, id string) error {
	return c.remove(ctx, matchbox.KindGroup, id)
}

// Template returns a template by kind and name.
func (c RPCCatalog) Template(ctx context.Context, kind matchbox.TemplateKind, name string) (*matchbox.Template, error) {
	obj, err := c.get(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	return obj.Template, nil
}

// PutTemplate creates or replaces a template.
func (c RPCCatalog) PutTemplate(ctx context.Context, t *matchbox.Template) error {
	return c.put(ctx, &store.Object{Kind: t.Kind, ID: t.Name, Template: t})
}

// DeleteTemplate removes a template.
func (c RPCCatalog) DeleteTemplate(ctx context.Context, kind matchbox.TemplateKind, name string) error {
	return c.remove(ctx, kind, name)
}

// Snapshot returns the store's current snapshot.
func (c RPCCatalog) Snapshot() *matchbox.Snapshot { return c.Store.Snapshot() }
