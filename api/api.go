// Package api serves matchbox's REST API v1 under /api/v1 on a gorilla/mux
// router: profiles, groups, templates, machines with their timelines,
// inventories and BMCs, power, boot-device and provisioning actions,
// declarative plan and apply of bundles, and the OpenAPI document of it all.
// Every object carries a version, exposed as its ETag; writes honour
// If-Match. Clients authenticate with a bearer token or a TLS client
// certificate; without a token file only loopback clients are served.
package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"matchbox/matchbox"
)

// Prefix is the path prefix of every API route.
const Prefix = "/api/v1"

// DefaultMaxBodyBytes is the default request body limit: 4 MiB.
const DefaultMaxBodyBytes = 4 << 20

// Config configures the API.
type Config struct {
	// Store holds the catalog and machines.
	Store Store
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
	// Tokens are the accepted bearer tokens; nil serves loopback clients
	// only (and clients with a verified TLS certificate).
	Tokens *Tokens
	// RequireClientCert refuses clients without a verified TLS client
	// certificate or a bearer token, even from loopback.
	RequireClientCert bool
	// ParseFact parses hardware-fact terms of groups when plans are
	// validated; it should be the store's parser.
	ParseFact matchbox.FactParser
	// MaxBodyBytes limits request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Lifecycle declares BMCs and runs power, boot-device and provisioning
	// actions; nil answers those endpoints with 501 not_configured.
	Lifecycle Lifecycle
	// Leases reads the stored DHCP leases for GET /api/v1/leases; nil
	// answers it with 501 not_configured.
	Leases Leases
	// Renderer answers GET /render; nil answers it with 501
	// not_configured.
	Renderer Renderer
	// Instances lists the instances sharing the store for GET
	// /api/v1/instances; nil answers it with 501 not_configured.
	Instances Instances
	// Audit reads the audit trail for GET /api/v1/audit; nil answers it
	// with 501 not_configured.
	Audit AuditLog
}

// API is the REST API handler set.
type API struct {
	cfg     Config
	log     *slog.Logger
	openapi []byte
}

// New returns the API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: no store")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
	}
	doc, err := OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	return &API{cfg: cfg, log: log, openapi: doc}, nil
}

// Register adds the API's routes under Prefix to r, and a last route that
// answers every other request under Prefix with a JSON 404 or 405 error.
// Routes added to r under Prefix after Register are shadowed by it.
func (a *API) Register(r *mux.Router) {
	var routes []*mux.Route
	handle := func(path string, h handlerFunc, methods ...string) {
		routes = append(routes, r.Handle(Prefix+path, a.withAuth(a.limitBody(a.serve(h)))).Methods(methods...))
	}
	handle("/openapi.json", a.getOpenAPI, http.MethodGet)

	for _, kind := range []matchbox.Kind{matchbox.KindProfile, matchbox.KindGroup} {
		c := catalogHandlers{a: a, kind: kind}
		coll := "/" + string(kind) + "s"
		handle(coll, c.list, http.MethodGet)
		handle(coll, c.create, http.MethodPost)
		handle(coll+"/{id}", c.get, http.MethodGet)
		handle(coll+"/{id}", c.replace, http.MethodPut)
		handle(coll+"/{id}", c.remove, http.MethodDelete)
	}
	t := catalogHandlers{a: a}
	handle("/templates", t.list, http.MethodGet)
	handle("/templates/{kind}", t.list, http.MethodGet)
	handle("/templates/{kind}", t.create, http.MethodPost)
	handle("/templates/{kind}/{id}", t.get, http.MethodGet)
	handle("/templates/{kind}/{id}", t.replace, http.MethodPut)
	handle("/templates/{kind}/{id}", t.remove, http.MethodDelete)

	handle("/machines", a.listMachines, http.MethodGet)
	handle("/machines", a.createMachine, http.MethodPost)
	handle("/machines/provision", a.provisionMachines, http.MethodPost)
	// A machine's routes name it by id or by one of its MACs (any
	// notation), so a MAC read off a console or a DHCP log works.
	m := a.byMAC
	handle("/machines/{id}", m(a.getMachine), http.MethodGet)
	handle("/machines/{id}", m(a.replaceMachine), http.MethodPut)
	handle("/machines/{id}", m(a.deleteMachine), http.MethodDelete)
	handle("/machines/{id}/labels", m(a.setMachineLabels), http.MethodPut)
	handle("/machines/{id}/state", m(a.setMachineState), http.MethodPut)
	handle("/machines/{id}/events", m(a.machineEvents), http.MethodGet)
	handle("/machines/{id}/inventory", m(a.machineInventory), http.MethodGet)
	handle("/machines/{id}/bmc", m(a.getBMC), http.MethodGet)
	handle("/machines/{id}/bmc", m(a.putBMC), http.MethodPut)
	handle("/machines/{id}/bmc", m(a.deleteBMC), http.MethodDelete)
	handle("/machines/{id}/power", m(a.machinePower), http.MethodPost)
	handle("/machines/{id}/bootdevice", m(a.machineBootDevice), http.MethodPost)
	handle("/machines/{id}/provision", m(a.provisionMachine), http.MethodPost)

	handle("/leases", a.listLeases, http.MethodGet)
	handle("/instances", a.listInstances, http.MethodGet)
	handle("/audit", a.listAudit, http.MethodGet)

	handle("/render", a.render, http.MethodGet)
	handle("/plan", a.plan, http.MethodPost)
	handle("/apply", a.apply, http.MethodPost)

	r.PathPrefix(Prefix).Handler(a.withAuth(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var allow []string
		for _, route := range routes {
			var m mux.RouteMatch
			if !route.Match(req, &m) && errors.Is(m.MatchErr, mux.ErrMethodMismatch) {
				methods, _ := route.GetMethods()
				allow = append(allow, methods...)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			a.writeError(w, req, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "method %s is not allowed on %s: use %s", req.Method, req.URL.Path, strings.Join(allow, ", ")))
			return
		}
		a.writeError(w, req, errorf(http.StatusNotFound, CodeNotFound, "", "no API resource at %s", req.URL.Path))
	})))
}

func (a *API) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(a.openapi)
	return nil
}

// limitBody caps the request body at MaxBodyBytes.
func (a *API) limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > a.cfg.MaxBodyBytes {
			a.writeError(w, r, errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "request body of %d bytes exceeds %d bytes", r.ContentLength, a.cfg.MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

// Body formats.
const (
	formatJSON = "json"
	formatYAML = "yaml"
	formatText = "text"
)

// bodyFormat tells the format of the request body from its Content-Type:
// JSON (the default when none is given), YAML, or plain text when allowText.
func bodyFormat(r *http.Request, allowText bool) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return formatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", errorf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "Content-Type", "Content-Type %q is malformed: %v", ct, err)
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return formatJSON, nil
	case mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || mt == "text/x-yaml":
		return formatYAML, nil
	case allowText && mt == "text/plain":
		return formatText, nil
	}
	want := "application/json, application/yaml or text/yaml"
	if allowText {
		want += " (or text/plain for template content)"
	}
	return "", errorf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "Content-Type", "Content-Type %q is not supported: send %s", mt, want)
}

// readBody checks the Content-Type and reads the whole body.
func readBody(r *http.Request, allowText bool) ([]byte, string, error) {
	format, err := bodyFormat(r, allowText)
	if err != nil {
		return nil, "", err
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read request body: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, "", errorf(http.StatusBadRequest, CodeInvalidBody, "", "the request body is empty")
	}
	return data, format, nil
}

// Precondition values beside a version: mustExist for If-Match: *, and
// mustNotExist (the store's -1) for If-None-Match: *.
const (
	mustExist    int64 = -2
	mustNotExist int64 = -1
	// noVersion is the version of an entity tag this API never issues
	// (an opaque "abc", a weak W/"3", a list): no object carries it, so
	// the precondition fails with 412 as RFC 9110 asks of any tag that
	// does not match.
	noVersion int64 = math.MaxInt64
)

// precondition reads If-Match and If-None-Match: 0 when absent, a version,
// mustExist or mustNotExist.
func precondition(r *http.Request) (int64, error) {
	if inm := strings.TrimSpace(r.Header.Get("If-None-Match")); inm != "" {
		if inm != "*" {
			return 0, errorf(http.StatusBadRequest, CodeBadRequest, "If-None-Match", "If-None-Match supports only *")
		}
		return mustNotExist, nil
	}
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" {
		return 0, nil
	}
	if im == "*" {
		return mustExist, nil
	}
	if len(im) < 2 || !strings.HasSuffix(im, `"`) || !(strings.HasPrefix(im, `"`) || strings.HasPrefix(im, `W/"`)) {
		return 0, errorf(http.StatusBadRequest, CodeBadRequest, "If-Match", "If-Match %q is not an entity tag (\"<version>\" or *)", im)
	}
	if !strings.HasPrefix(im, `"`) || strings.Contains(im, ",") {
		return noVersion, nil // weak tags never match strongly; lists hold no tag of ours alone
	}
	v, err := strconv.ParseInt(im[1:len(im)-1], 10, 64)
	if err != nil || v <= 0 {
		return noVersion, nil
	}
	return v, nil
}

// etag formats a version as an ETag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// page reads the limit and after query parameters.
func page(r *http.Request, def, max int) (limit int, after string, err error) {
	q := r.URL.Query()
	limit = def
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > max {
			return 0, "", errorf(http.StatusBadRequest, CodeBadRequest, "limit", "limit %q: want a number from 1 to %d", s, max)
		}
		limit = n
	}
	return limit, q.Get("after"), nil
}

// byMAC makes h's {id} the id of the machine that has the MAC the path
// names, when no machine has that id and it parses as a MAC
// (52:54:00:12:34:56, 52-54-00-12-34-56, 525400123456). A MAC no machine
// has is left as it is: as an id it is 404, or a machine a PUT creates.
func (a *API) byMAC(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vars := mux.Vars(r)
		id := vars["id"]
		if _, ok := a.cfg.Store.LookupMachineByID(id); ok {
			return h(w, r)
		}
		mac, err := matchbox.NormalizeMAC(id)
		if err != nil {
			return h(w, r)
		}
		if m, ok := a.cfg.Store.LookupMachine(mac, ""); ok {
			resolved := maps.Clone(vars)
			resolved["id"] = m.ID
			r = mux.SetURLVars(r, resolved)
		}
		return h(w, r)
	}
}
