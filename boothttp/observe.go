package boothttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"matchbox/matchbox"
)

// provisionedPath is the completion callback's path (lifecycle's
// ProvisionedPath; boothttp does not import the lifecycle).
const provisionedPath = "/provisioned"

// observed reports whether a request may change state: it comes from a
// boot network, names a machine by MAC or UUID, and is not a render.
func (s *Server) observed(r *http.Request, labels matchbox.Labels) bool {
	if renderOutOf(r.Context()) != nil {
		return false
	}
	if labels.MAC() == "" && labels["uuid"] == "" {
		return false
	}
	return s.fromBootNetwork(r)
}

// fromBootNetwork reports whether the request's client is in one of the
// configured boot networks (any client when none are configured).
func (s *Server) fromBootNetwork(r *http.Request) bool {
	if len(s.cfg.BootNetworks) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.cfg.BootNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// provisioned answers the completion callback: POST (or GET, for
// systems whose only client is a fetcher) /provisioned?machine=ID&token=T.
func (s *Server) provisioned(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	id, tok := q.Get("machine"), q.Get("token")
	if id == "" || tok == "" {
		http.Error(w, "machine and token query parameters are required", http.StatusBadRequest)
		return
	}
	if !s.fromBootNetwork(r) {
		s.log.WarnContext(r.Context(), "completion callback from outside the boot networks", "machine", id, "remote", r.RemoteAddr)
		http.Error(w, "client is outside the boot networks", http.StatusForbidden)
		return
	}
	err := s.cfg.Lifecycle.Complete(r.Context(), id, tok)
	if err == nil {
		fmt.Fprintln(w, "provisioned")
		return
	}
	status := http.StatusInternalServerError
	var se interface{ HTTPStatus() int }
	if errors.As(err, &se) {
		status = se.HTTPStatus()
	}
	lvl := slog.LevelInfo
	if status == http.StatusForbidden {
		lvl = slog.LevelWarn
	} else if status >= 500 {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "completion callback refused", "machine", id, "remote", r.RemoteAddr, "status", status, "err", err)
	http.Error(w, oneLine(err.Error()), status)
}

// Rendered is what a machine would get from a boot endpoint, and which
// group and profile chose it.
type Rendered struct {
	// Endpoint is the endpoint rendered (ipxe, grub, ignition, generic,
	// metadata).
	Endpoint string
	// Status is the HTTP status the endpoint would answer.
	Status int
	// ContentType is the answer's content type.
	ContentType string
	// Body is the answer.
	Body []byte
	// Group and Profile selected the answer; nil when none matched.
	Group   *matchbox.Group
	Profile *matchbox.Profile
}

type renderKey struct{}

func renderOutOf(ctx context.Context) *Rendered {
	out, _ := ctx.Value(renderKey{}).(*Rendered)
	return out
}

// Render answers endpoint for a request with the query labels (mac, uuid,
// any label) as a machine would get it, without recording events,
// creating machines or moving states. host stands in for the request's
// Host (template variables such as matchbox_url use it).
func (s *Server) Render(ctx context.Context, endpoint string, query url.Values, host string) (*Rendered, error) {
	h, ok := s.selectingHandlers()[endpoint]
	if !ok {
		return nil, fmt.Errorf("endpoint %q: want ipxe, grub, ignition, generic or metadata", endpoint)
	}
	out := &Rendered{Endpoint: endpoint}
	u := url.URL{Scheme: "http", Host: host, Path: "/" + endpoint, RawQuery: query.Encode()}
	r, err := http.NewRequestWithContext(context.WithValue(ctx, renderKey{}, out), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", endpoint, err)
	}
	w := &bufferWriter{header: http.Header{}}
	h.ServeHTTP(w, r)
	out.Status = w.status
	if out.Status == 0 {
		out.Status = http.StatusOK
	}
	out.ContentType = w.header.Get("Content-Type")
	out.Body = w.body.Bytes()
	return out, nil
}

// bufferWriter is an http.ResponseWriter into memory.
type bufferWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

func (w *bufferWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
