package api

import (
	"context"
	"net/http"
	"net/url"

	"matchbox/api/wire"
	"matchbox/boothttp"
)

// Renderer answers a boot endpoint as a machine would get it, without
// side effects; *boothttp.Server implements it.
type Renderer interface {
	Render(ctx context.Context, endpoint string, query url.Values, host string) (*boothttp.Rendered, error)
}

// render answers GET /render?endpoint=E&mac=M&uuid=U&LABEL=V: what the
// machine those labels name would get from endpoint E (default ipxe), and
// the group and profile that chose it. It creates no machine, records no
// event and moves no state.
func (a *API) render(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Renderer == nil {
		return errorf(http.StatusNotImplemented, CodeNotConfigured, "", "this server renders no boot endpoints")
	}
	q := r.URL.Query()
	endpoint := q.Get("endpoint")
	if endpoint == "" {
		endpoint = "ipxe"
	}
	q.Del("endpoint")
	if q.Get("mac") == "" && q.Get("uuid") == "" {
		return errorf(http.StatusBadRequest, CodeBadRequest, "mac", "mac or uuid is required: they name the machine")
	}
	out, err := a.cfg.Renderer.Render(r.Context(), endpoint, q, r.Host)
	if err != nil {
		return errorf(http.StatusBadRequest, CodeBadRequest, "endpoint", "%v", err)
	}
	res := wire.Rendered{Endpoint: out.Endpoint, Status: out.Status, ContentType: out.ContentType, Body: string(out.Body)}
	if out.Group != nil {
		res.Group = out.Group.ID
	}
	if out.Profile != nil {
		res.Profile = out.Profile.ID
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
