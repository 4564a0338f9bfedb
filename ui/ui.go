// Package ui serves matchbox's web console under /ui/: the fleet, each
// machine with its boot timeline updated live by server-sent events, groups
// and profiles, and the admin's actions. Pages are server-rendered from
// templates embedded in the binary. The console reads through the
// interfaces below and acts only through the REST API's handlers, so every
// write takes the API's one write path and role checks.
package ui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"matchbox/api"
	"matchbox/api/wire"
	"matchbox/bmc"
	"matchbox/matchbox"
	"matchbox/store"
)

// Prefix is the path prefix of every console page.
const Prefix = "/ui/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Machines is what the console reads of the machines.
type Machines interface {
	// ListMachines returns the machines f selects, ordered by id.
	ListMachines(ctx context.Context, f store.MachineFilter) ([]*matchbox.Machine, error)
	// Machine returns a machine and its version.
	Machine(ctx context.Context, id string) (*matchbox.Machine, int64, error)
	// LookupMachineByID returns the in-memory index's machine, inventory
	// included.
	LookupMachineByID(id string) (matchbox.Machine, bool)
	// CountMachinesByState returns how many machines are in each state.
	CountMachinesByState(ctx context.Context) (map[matchbox.MachineState]int, error)
	// Events returns a machine's timeline, oldest first.
	Events(ctx context.Context, machineID string, f store.EventFilter) ([]matchbox.Event, error)
	// FleetEvents returns the events of every machine, oldest first.
	FleetEvents(ctx context.Context, f store.EventFilter) ([]matchbox.Event, error)
}

// BMCs reads machines' BMCs; the lifecycle implements it.
type BMCs interface {
	// BMC returns a machine's BMC without credentials.
	BMC(ctx context.Context, machineID string) (ep bmc.Endpoint, hasCredentials bool, err error)
}

// Auth authenticates the console's users by the API's rules; *api.API
// implements it.
type Auth interface {
	// Authenticate returns the role of a request's client (client
	// certificate, or the loopback rule without a token file).
	Authenticate(r *http.Request) (api.Role, error)
	// TokensConfigured reports whether API tokens are configured.
	TokensConfigured() bool
	// LookupToken returns the role of an API token.
	LookupToken(token string) (api.Role, bool)
}

// Config configures the console.
type Config struct {
	// Machines are read for the fleet and machine pages.
	Machines Machines
	// Snapshot returns the current catalog.
	Snapshot func() *matchbox.Snapshot
	// ParseFact parses hardware-fact filters (the group selector syntax).
	ParseFact matchbox.FactParser
	// BMCs reads BMCs and power states; nil shows none.
	BMCs BMCs
	// Auth authenticates users.
	Auth Auth
	// API is the REST API's handler (routes under api.Prefix): every action
	// is a request to it.
	API http.Handler
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
	// SessionTTL is how long a login lasts (default 12 hours).
	SessionTTL time.Duration
	// MaxSessions bounds the sessions held in memory (default 1000); the
	// session expiring first gives way to a new one.
	MaxSessions int
	// PageSize is the fleet page's number of machines (default 100).
	PageSize int
	// PollInterval is how often a live timeline looks for new events
	// (default one second).
	PollInterval time.Duration
}

// Server is the web console.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pages    map[string]*template.Template
	sessions *sessions
	mux      *http.ServeMux
}

// New returns the console for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Machines == nil || cfg.Snapshot == nil || cfg.Auth == nil || cfg.API == nil {
		return nil, errors.New("ui: Machines, Snapshot, Auth and API are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, pages: pages, sessions: newSessions(cfg.MaxSessions, cfg.SessionTTL)}
	s.routes()
	return s, nil
}

// ServeHTTP serves the console's pages under Prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/login", s.loginPage)
	m.HandleFunc("POST /ui/login", s.login)
	m.Handle("POST /ui/logout", s.action(s.logout))
	m.Handle("GET /ui/{$}", s.page(s.fleet))
	m.Handle("GET /ui/machines/{id}", s.page(s.machine))
	m.Handle("GET /ui/machines/{id}/stream", s.page(s.stream))
	m.Handle("GET /ui/groups", s.page(s.groups))
	m.Handle("GET /ui/events", s.page(s.events))
	m.Handle("GET /ui/events/stream", s.page(s.fleetStream))
	m.Handle("POST /ui/machines/{id}/provision", s.action(s.provisionOne))
	m.Handle("POST /ui/machines/{id}/power", s.action(s.power))
	m.Handle("POST /ui/machines/{id}/bootdevice", s.action(s.bootDevice))
	m.Handle("POST /ui/machines/{id}/labels", s.action(s.setLabels))
	m.Handle("POST /ui/machines/{id}/state", s.action(s.setState))
	m.Handle("POST /ui/provision", s.action(s.provisionSelector))
	s.mux = m
}

// user is an authenticated console user.
type user struct {
	// Role is what the user may do.
	Role api.Role
	// CSRF is the token every action form carries.
	CSRF string
}

// Admin reports whether the user may act.
func (u user) Admin() bool { return u.Role == api.RoleAdmin }

// identify returns the request's user: a login session, or the API's
// certificate and loopback rules (with a session carrying the CSRF token,
// created when missing).
func (s *Server) identify(w http.ResponseWriter, r *http.Request) (user, error) {
	sess, ok := s.sessions.get(r)
	if ok && sess.token {
		return user{Role: sess.role, CSRF: sess.csrf}, nil
	}
	role, err := s.cfg.Auth.Authenticate(r)
	if err != nil {
		return user{}, err
	}
	if !ok {
		sess = s.sessions.create(w, r, role, false)
	}
	return user{Role: role, CSRF: sess.csrf}, nil
}

// refuse answers a request without a user: the login page when tokens are
// configured, else the API's refusal.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if s.cfg.Auth.TokensConfigured() {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		http.Error(w, "log in first", http.StatusUnauthorized)
		return
	}
	http.Error(w, err.Error(), http.StatusForbidden)
}

type pageFunc func(w http.ResponseWriter, r *http.Request, u user) error

// page serves a read page to any authenticated user.
func (s *Server) page(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identify(w, r)
		if err != nil {
			s.refuse(w, r, err)
			return
		}
		s.finish(w, r, h(w, r, u))
	})
}

// action serves a form post: admins only, with the session's CSRF token.
func (s *Server) action(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identify(w, r)
		if err != nil {
			s.refuse(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "malformed form: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !validCSRF(u.CSRF, r.PostForm.Get("csrf")) {
			http.Error(w, "the form's CSRF token is missing or stale: reload the page", http.StatusForbidden)
			return
		}
		if !u.Admin() && r.URL.Path != Prefix+"logout" {
			http.Error(w, fmt.Sprintf("role %s may not act", u.Role), http.StatusForbidden)
			return
		}
		s.finish(w, r, h(w, r, u))
	})
}

// httpError is an error with the status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func (s *Server) finish(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil {
		return
	}
	var he *httpError
	switch {
	case errors.As(err, &he):
		http.Error(w, he.msg, he.status)
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		s.log.ErrorContext(r.Context(), "console request failed", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
	}
}

// render executes the page template name with data.
func (s *Server) render(w http.ResponseWriter, name string, data any) error {
	return s.renderStatus(w, http.StatusOK, name, data)
}

// renderStatus executes the page template name with data and answers with
// status.
func (s *Server) renderStatus(w http.ResponseWriter, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render page %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, err := buf.WriteTo(w)
	return err
}

// callAPI makes a request to the REST API as u (body: JSON, nil for none)
// and returns its answer's body; an error answer becomes an error carrying the API's
// message and status.
func (s *Server) callAPI(r *http.Request, u user, method, path string, body any) ([]byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode API request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(api.WithRole(r.Context(), u.Role), method, api.Prefix+path, rd)
	if err != nil {
		return nil, fmt.Errorf("API request: %w", err)
	}
	req.Host = r.Host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr = r.RemoteAddr
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	s.cfg.API.ServeHTTP(rec, req)
	if rec.status >= 400 {
		var e wire.Error
		msg := strings.TrimSpace(rec.body.String())
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return nil, &httpError{status: rec.status, msg: msg}
	}
	return rec.body.Bytes(), nil
}

// bufferedResponse is the http.ResponseWriter of an in-process API call.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
