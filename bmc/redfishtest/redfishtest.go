// Package redfishtest is a Redfish BMC test double: an HTTPS server speaking
// the few resources bmclib v2's Redfish (gofish) provider uses to read and
// set power and the boot override of one computer system:
//
//	GET    /redfish/v1/                          service root
//	POST   /redfish/v1/SessionService/Sessions   log in (X-Auth-Token, Location)
//	DELETE /redfish/v1/SessionService/Sessions/N log out
//	GET    /redfish/v1/Systems                   collection with one member
//	GET    /redfish/v1/Systems/1                 PowerState, Boot
//	PATCH  /redfish/v1/Systems/1                 {"Boot": {...}} override
//	POST   /redfish/v1/Systems/1/Actions/ComputerSystem.Reset  {"ResetType": ...}
//
// Both session-token and HTTP basic authentication are accepted. Every
// request is recorded (method and path) for tests to inspect.
package redfishtest

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Options configures a Server.
type Options struct {
	// Username and Password accepted by the double (default "admin" and
	// "password").
	Username, Password string
	// PoweredOn is the initial power state (default off).
	PoweredOn bool
	// IgnoreBootPatch makes the double answer a boot override PATCH with
	// 204 No Content without applying it, as some BMCs do.
	IgnoreBootPatch bool
	// FailFirst makes the first FailFirst requests answer 503 Service
	// Unavailable, a transient failure.
	FailFirst int
}

// Request is one request the double received.
type Request struct {
	Method, Path string
}

// Server is a running Redfish double.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	opts     Options
	power    string // "On" or "Off"
	target   string // BootSourceOverrideTarget
	enabled  string // BootSourceOverrideEnabled
	mode     string // BootSourceOverrideMode
	resets   []string
	requests []Request
	sessions map[string]bool
	nextID   int
	served   int
}

// New starts a TLS Redfish double on 127.0.0.1; call Close when done.
func New(opts Options) *Server {
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "password"
	}
	s := &Server{opts: opts, power: "Off", target: "None", enabled: "Disabled", mode: "Legacy", sessions: map[string]bool{}}
	if opts.PoweredOn {
		s.power = "On"
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake refusals are expected in tests
	s.StartTLS()
	return s
}

// HostPort returns the double's address and port, for a bmc.Endpoint.
func (s *Server) HostPort() (string, int) {
	host, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return host, p
}

// Power returns the system's PowerState ("On" or "Off").
func (s *Server) Power() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.power
}

// SetPower sets the system's PowerState directly.
func (s *Server) SetPower(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.power = map[bool]string{true: "On", false: "Off"}[on]
}

// Boot returns BootSourceOverrideTarget, ...Enabled and ...Mode.
func (s *Server) Boot() (target, enabled, mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target, s.enabled, s.mode
}

// Resets returns the ResetType of every reset action received, in order.
func (s *Server) Resets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.resets...)
}

// Requests returns every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// OpenSessions counts the sessions logged in and not yet logged out.
func (s *Server) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) authorised(r *http.Request) bool {
	if u, p, ok := r.BasicAuth(); ok {
		return u == s.opts.Username && p == s.opts.Password
	}
	return s.sessions[r.Header.Get("X-Auth-Token")]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func redfishError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": "Base.1.0.GeneralError", "message": msg}})
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := strings.TrimSuffix(r.URL.Path, "/")
	s.requests = append(s.requests, Request{Method: r.Method, Path: path})
	s.served++
	if s.served <= s.opts.FailFirst {
		redfishError(w, http.StatusServiceUnavailable, "service temporarily unavailable")
		return
	}
	const sessionsPath = "/redfish/v1/SessionService/Sessions"
	switch {
	case path == "/redfish/v1" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id":      "/redfish/v1/",
			"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
			"Id":             "RootService",
			"Name":           "Root Service",
			"RedfishVersion": "1.6.0",
			"UUID":           "92384634-2938-2342-8820-489239905423",
			"Systems":        map[string]string{"@odata.id": "/redfish/v1/Systems"},
			"SessionService": map[string]string{"@odata.id": "/redfish/v1/SessionService"},
			"Links":          map[string]any{"Sessions": map[string]string{"@odata.id": sessionsPath}},
		})
	case path == sessionsPath && r.Method == http.MethodPost:
		var body struct{ UserName, Password string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			redfishError(w, http.StatusBadRequest, "malformed session request")
			return
		}
		if body.UserName != s.opts.Username || body.Password != s.opts.Password {
			redfishError(w, http.StatusUnauthorized, "invalid username or password")
			return
		}
		s.nextID++
		id := strconv.Itoa(s.nextID)
		token := fmt.Sprintf("token-%d", s.nextID)
		s.sessions[token] = true
		w.Header().Set("X-Auth-Token", token)
		w.Header().Set("Location", sessionsPath+"/"+id)
		writeJSON(w, http.StatusCreated, map[string]any{"@odata.id": sessionsPath + "/" + id, "Id": id, "UserName": body.UserName})
	case strings.HasPrefix(path, sessionsPath+"/") && r.Method == http.MethodDelete:
		if !s.authorised(r) {
			redfishError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		delete(s.sessions, r.Header.Get("X-Auth-Token"))
		w.WriteHeader(http.StatusNoContent)
	case !s.authorised(r):
		redfishError(w, http.StatusUnauthorized, "unauthorized")
	case path == "/redfish/v1/Systems" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id":           "/redfish/v1/Systems",
			"Name":                "Computer System Collection",
			"Members@odata.count": 1,
			"Members":             []map[string]string{{"@odata.id": "/redfish/v1/Systems/1"}},
		})
	case path == "/redfish/v1/Systems/1" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.system())
	case path == "/redfish/v1/Systems/1" && r.Method == http.MethodPatch:
		var body struct {
			Boot struct {
				BootSourceOverrideTarget  string
				BootSourceOverrideEnabled string
				BootSourceOverrideMode    string
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			redfishError(w, http.StatusBadRequest, "malformed PATCH body")
			return
		}
		if !s.opts.IgnoreBootPatch {
			b := body.Boot
			if b.BootSourceOverrideTarget != "" {
				s.target = b.BootSourceOverrideTarget
			}
			if b.BootSourceOverrideEnabled != "" {
				s.enabled = b.BootSourceOverrideEnabled
			}
			if b.BootSourceOverrideMode != "" {
				s.mode = b.BootSourceOverrideMode
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		var body struct{ ResetType string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			redfishError(w, http.StatusBadRequest, "malformed reset body")
			return
		}
		switch body.ResetType {
		case "On", "ForceOn":
			s.power = "On"
		case "ForceOff", "GracefulShutdown":
			s.power = "Off"
		case "ForceRestart", "GracefulRestart", "PowerCycle":
			if s.power != "On" {
				redfishError(w, http.StatusConflict, "system is off")
				return
			}
		default:
			redfishError(w, http.StatusBadRequest, "unsupported ResetType "+body.ResetType)
			return
		}
		s.resets = append(s.resets, body.ResetType)
		w.WriteHeader(http.StatusNoContent)
	default:
		redfishError(w, http.StatusNotFound, "no resource at "+path)
	}
}

func (s *Server) system() map[string]any {
	return map[string]any{
		"@odata.id":    "/redfish/v1/Systems/1",
		"@odata.type":  "#ComputerSystem.v1_10_0.ComputerSystem",
		"Id":           "1",
		"Name":         "Test System",
		"Manufacturer": "matchbox",
		"Model":        "redfishtest",
		"PowerState":   s.power,
		"Boot": map[string]any{
			"BootSourceOverrideTarget":                         s.target,
			"BootSourceOverrideEnabled":                        s.enabled,
			"BootSourceOverrideMode":                           s.mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"None", "Pxe", "Hdd", "Cd", "BiosSetup"},
		},
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle"},
			},
		},
	}
}
