package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"matchbox/api/wire"
	"matchbox/matchbox"
	"matchbox/store"
)

// bootAnswer is what a machine would get now from the boot endpoints: the
// iPXE script and its profile's config, as GET /api/v1/render answers
// them (the boot server's own rendering, without side effects).
type bootAnswer struct {
	// For names the machine rendered for (its labels as query).
	For string
	// Group and Profile chose the answer; empty when none matched.
	Group, Profile string
	// IPXE is the /ipxe answer.
	IPXE *wire.Rendered
	// Configs are the answers of the profile's config endpoints
	// (ignition, generic).
	Configs []*wire.Rendered
	// Error says why nothing could be rendered.
	Error string
}

// renderQuery returns the query a machine's boot requests name it by: its
// first MAC and its UUID (the boot server joins its stored labels and
// facts).
func renderQuery(m *matchbox.Machine) url.Values {
	q := url.Values{}
	if len(m.MACs) > 0 {
		q.Set("mac", m.MACs[0])
	}
	if m.UUID != "" {
		q.Set("uuid", m.UUID)
	}
	return q
}

// renderMachine renders what m would get now.
func (s *Server) renderMachine(r *http.Request, u user, m *matchbox.Machine) bootAnswer {
	q := renderQuery(m)
	if len(q) == 0 {
		return bootAnswer{For: m.ID, Error: "this machine has no MAC or UUID to boot by"}
	}
	return s.renderBoot(r, u, q)
}

// renderBoot renders the /ipxe answer for the query's labels through the
// API's GET /render, then the config endpoints of the profile it selected.
func (s *Server) renderBoot(r *http.Request, u user, q url.Values) bootAnswer {
	ans := bootAnswer{For: q.Encode()}
	get := func(endpoint string) (*wire.Rendered, error) {
		qq := url.Values{"endpoint": {endpoint}}
		for k, v := range q {
			qq[k] = v
		}
		body, err := s.callAPI(r, u, http.MethodGet, "/render?"+qq.Encode(), nil)
		if err != nil {
			return nil, err
		}
		var out wire.Rendered
		if err := json.Unmarshal(body, &out); err != nil {
			return nil, fmt.Errorf("decode rendered %s: %w", endpoint, err)
		}
		return &out, nil
	}
	ipxe, err := get("ipxe")
	if err != nil {
		ans.Error = renderError(err)
		return ans
	}
	ans.IPXE, ans.Group, ans.Profile = ipxe, ipxe.Group, ipxe.Profile
	p, ok := s.cfg.Snapshot().Profile(ipxe.Profile)
	if !ok {
		return ans
	}
	for _, c := range []struct{ endpoint, id string }{{"ignition", p.IgnitionID}, {"generic", p.GenericID}} {
		if c.id == "" {
			continue
		}
		out, err := get(c.endpoint)
		if err != nil {
			ans.Error = renderError(err)
			continue
		}
		ans.Configs = append(ans.Configs, out)
	}
	return ans
}

// renderError says why rendering failed.
func renderError(err error) string {
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusNotImplemented {
		return "this server renders no boot endpoints"
	}
	return "cannot render: " + err.Error()
}

// uuidRE matches a UUID in its usual text form.
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// machineQuery resolves what an operator typed to name a machine: a stored
// machine's id, else a MAC or a UUID (a machine matchbox has not seen yet).
func (s *Server) machineQuery(r *http.Request, typed string) (url.Values, error) {
	typed = strings.TrimSpace(typed)
	m, _, err := s.cfg.Machines.Machine(r.Context(), typed)
	switch {
	case err == nil:
		q := renderQuery(m)
		if len(q) == 0 {
			return nil, fmt.Errorf("machine %s has no MAC or UUID to boot by", m.ID)
		}
		return q, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if hw, err := net.ParseMAC(typed); err == nil && len(hw) == 6 {
		return url.Values{"mac": {hw.String()}}, nil
	}
	if uuidRE.MatchString(typed) {
		return url.Values{"uuid": {strings.ToLower(typed)}}, nil
	}
	return nil, fmt.Errorf("%q is no machine's id, nor a MAC or a UUID", typed)
}
