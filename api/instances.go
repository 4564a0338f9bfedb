package api

import (
	"context"
	"net/http"
	"time"

	"matchbox/api/wire"
	"matchbox/store"
)

// Instances lists the matchbox instances that share this server's store
// (on etcd, those registered and alive; on SQLite, this one).
type Instances interface {
	Instances(ctx context.Context) ([]store.Instance, error)
}

// listInstances answers GET /api/v1/instances, ordered by id.
func (a *API) listInstances(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Instances == nil {
		return errorf(http.StatusNotImplemented, CodeNotConfigured, "", "this server does not list instances")
	}
	list, err := a.cfg.Instances.Instances(r.Context())
	if err != nil {
		return err
	}
	out := wire.List{Items: []wire.Item{}}
	for _, in := range list {
		out.Items = append(out.Items, wire.Item{ID: in.ID, Instance: &wire.Instance{
			ID: in.ID, Addresses: in.Addresses, Version: in.Version, DHCPRanges: in.DHCPRanges,
			StartedAt: in.StartedAt.UTC().Format(time.RFC3339),
		}})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
