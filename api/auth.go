package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
)

// Role is what an authenticated client may do.
type Role string

// Roles of API clients.
const (
	// RoleRead may read (GET) and plan.
	RoleRead Role = "read"
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
)

// Tokens is a set of bearer tokens and their roles, read from a file of
// `<token> <role>` lines (`#` starts a comment). It is safe for concurrent
// use; Reload replaces the set atomically.
type Tokens struct {
	path    string
	mu      sync.RWMutex
	entries []tokenEntry
}

type tokenEntry struct {
	sum  [sha256.Size]byte
	role Role
}

// LoadTokens reads a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the tokens file again. On error the current set is kept.
func (t *Tokens) Reload() error {
	if t.path == "" {
		return nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	defer f.Close()
	entries, err := parseTokens(f, t.path)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.entries = entries
	t.mu.Unlock()
	return nil
}

// Len returns how many tokens are configured.
func (t *Tokens) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// Lookup returns the role of token. Every configured token is compared in
// constant time, so the answer's timing does not tell which prefix matched.
func (t *Tokens) Lookup(token string) (Role, bool) {
	sum := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var role Role
	found := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			role = e.role
			found = 1
		}
	}
	return role, found == 1
}

func parseTokens(r io.Reader, name string) ([]tokenEntry, error) {
	var entries []tokenEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want `<token> <role>`", name, n)
		}
		role := Role(fields[1])
		if role != RoleRead && role != RoleAdmin {
			return nil, fmt.Errorf("%s:%d: role %q: want read or admin", name, n, fields[1])
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("%s:%d: token is shorter than 16 characters", name, n)
		}
		entries = append(entries, tokenEntry{sum: sha256.Sum256([]byte(fields[0])), role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return entries, nil
}

// roleKey is the context key of a role vouched for in-process.
type roleKey struct{}

// WithRole returns ctx carrying role: a request whose context carries a role
// is served with that role, without further authentication. Only code of the
// same process can set it; the web console uses it to act through the API's
// write path for a user it has authenticated itself.
func WithRole(ctx context.Context, role Role) context.Context {
	return context.WithValue(ctx, roleKey{}, role)
}

// Authenticate returns the role of r's client by the API's rules (a role
// vouched for with WithRole, a verified client certificate, a bearer token,
// or the loopback rule without a token file), or the error refusing it.
func (a *API) Authenticate(r *http.Request) (Role, error) {
	role, err := a.authenticate(r)
	if err != nil {
		return "", err
	}
	return role, nil
}

// TokensConfigured reports whether the API authenticates bearer tokens (a
// token file is configured).
func (a *API) TokensConfigured() bool { return a.cfg.Tokens != nil }

// LookupToken returns the role of a bearer token, false when it is not
// valid or no token file is configured.
func (a *API) LookupToken(token string) (Role, bool) {
	if a.cfg.Tokens == nil {
		return "", false
	}
	return a.cfg.Tokens.Lookup(token)
}

// authenticate decides the role of a request's client:
//   - a role vouched for in-process (WithRole);
//   - a verified TLS client certificate: read when its subject's
//     organizational unit includes "read", admin otherwise;
//   - else, with tokens configured, a valid `Authorization: Bearer` token;
//   - else, without tokens, loopback clients are admin and others refused.
func (a *API) authenticate(r *http.Request) (Role, *apiError) {
	if role, ok := r.Context().Value(roleKey{}).(Role); ok && (role == RoleRead || role == RoleAdmin) {
		return role, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return CertificateRole(r.TLS.VerifiedChains[0][0]), nil
	}
	if a.cfg.Tokens != nil {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "a bearer token is required (Authorization: Bearer <token>)")
		}
		role, ok := a.cfg.Tokens.Lookup(strings.TrimSpace(token))
		if !ok {
			return "", errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "the bearer token is not valid")
		}
		return role, nil
	}
	if a.cfg.RequireClientCert {
		return "", errorf(http.StatusUnauthorized, CodeUnauthorized, "", "a verified client certificate is required")
	}
	if isLoopback(r.RemoteAddr) {
		return RoleAdmin, nil
	}
	return "", errorf(http.StatusForbidden, CodeForbidden, "", "no API token file is configured: the API answers loopback clients only")
}

// CertificateRole is the role of a client presenting a verified
// certificate: read when its subject's organizational unit includes "read",
// admin otherwise. The REST and gRPC APIs both use it.
func CertificateRole(cert *x509.Certificate) Role {
	if slices.Contains(cert.Subject.OrganizationalUnit, string(RoleRead)) {
		return RoleRead
	}
	return RoleAdmin
}

// allowed reports whether role may make the request. Plans write nothing,
// so readers may make them.
func allowed(role Role, r *http.Request) bool {
	if role == RoleAdmin {
		return true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodPost:
		return strings.TrimSuffix(r.URL.Path, "/") == Prefix+"/plan"
	}
	return false
}

// withAuth authenticates and authorizes every request before h.
func (a *API) withAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, err := a.authenticate(r)
		if err != nil {
			if err.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="matchbox"`)
			}
			a.writeError(w, r, err)
			return
		}
		if !allowed(role, r) {
			a.writeError(w, r, errorf(http.StatusForbidden, CodeForbidden, "", "role %s may not %s %s", role, r.Method, r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
