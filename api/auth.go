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

	"matchbox/audit"
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

// Tokens is a set of bearer tokens, their roles and names, read from a file
// of `<token> <role> [<name>]` lines (`#` starts a comment). A token's name
// is the actor of the changes made with it in the audit trail; a token
// without one is named token-<first 8 hex digits of its SHA-256>. It is safe
// for concurrent use; Reload replaces the set atomically.
type Tokens struct {
	path    string
	mu      sync.RWMutex
	entries []tokenEntry
}

type tokenEntry struct {
	sum  [sha256.Size]byte
	role Role
	name string
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
	_, err := t.ReloadChanges()
	return err
}

// ReloadChanges reads the tokens file again and returns, as audit records
// without an actor, the tokens it adds, removes or gives another role (by
// name). On error the current set is kept.
func (t *Tokens) ReloadChanges() ([]audit.Record, error) {
	if t.path == "" {
		return nil, nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	defer f.Close()
	entries, err := parseTokens(f, t.path)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	old := t.entries
	t.entries = entries
	t.mu.Unlock()
	return tokenChanges(old, entries), nil
}

// tokenChanges compares two token sets by token (its hash): a token added,
// removed, or given another role or name.
func tokenChanges(old, cur []tokenEntry) []audit.Record {
	var out []audit.Record
	rec := func(action string, e tokenEntry, detail string) {
		out = append(out, audit.Record{Action: action, Kind: audit.KindToken, Object: e.name, Detail: detail})
	}
	before := make(map[[sha256.Size]byte]tokenEntry, len(old))
	for _, e := range old {
		before[e.sum] = e
	}
	for _, e := range cur {
		o, ok := before[e.sum]
		delete(before, e.sum)
		switch {
		case !ok:
			rec(audit.ActionTokenAdd, e, "role "+string(e.role))
		case o.role != e.role || o.name != e.name:
			rec(audit.ActionTokenRole, e, fmt.Sprintf("%s (role %s) -> %s (role %s)", o.name, o.role, e.name, e.role))
		}
	}
	for _, e := range old {
		if _, gone := before[e.sum]; gone {
			rec(audit.ActionTokenRemove, e, "role "+string(e.role))
		}
	}
	return out
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
	role, _, ok := t.Identify(token)
	return role, ok
}

// Identify returns the role and name of token, compared as Lookup does.
func (t *Tokens) Identify(token string) (Role, string, bool) {
	sum := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var role Role
	var name string
	found := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			role, name = e.role, e.name
			found = 1
		}
	}
	return role, name, found == 1
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
		if len(fields) != 2 && len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want `<token> <role> [<name>]`", name, n)
		}
		role := Role(fields[1])
		if role != RoleRead && role != RoleAdmin {
			return nil, fmt.Errorf("%s:%d: role %q: want read or admin", name, n, fields[1])
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("%s:%d: token is shorter than 16 characters", name, n)
		}
		e := tokenEntry{sum: sha256.Sum256([]byte(fields[0])), role: role}
		e.name = fmt.Sprintf("token-%x", e.sum[:4])
		if len(fields) == 3 {
			e.name = fields[2]
		}
		for _, o := range entries {
			if o.name == e.name {
				return nil, fmt.Errorf("%s:%d: token name %q is used twice: the audit trail could not tell them apart", name, n, e.name)
			}
		}
		entries = append(entries, e)
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
	role, _, err := a.authenticate(r)
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

// authenticate decides the role of a request's client, and the actor its
// changes are recorded under in the audit trail:
//   - a role vouched for in-process (WithRole), with the actor the context
//     names (audit.WithActor), else audit.ActorConsole;
//   - a verified TLS client certificate: read when its subject's
//     organizational unit includes "read", admin otherwise; the actor is
//     its subject;
//   - else, with tokens configured, a valid `Authorization: Bearer` token,
//     the actor its name;
//   - else, without tokens, loopback clients are admin (actor
//     audit.ActorCLI) and others refused.
func (a *API) authenticate(r *http.Request) (Role, string, *apiError) {
	if role, ok := r.Context().Value(roleKey{}).(Role); ok && (role == RoleRead || role == RoleAdmin) {
		if actor, ok := audit.ActorOf(r.Context()); ok {
			return role, actor, nil
		}
		return role, audit.ActorConsole, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		return CertificateRole(cert), CertificateActor(cert), nil
	}
	if a.cfg.Tokens != nil {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", "", errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "a bearer token is required (Authorization: Bearer <token>)")
		}
		role, name, ok := a.cfg.Tokens.Identify(strings.TrimSpace(token))
		if !ok {
			return "", "", errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "the bearer token is not valid")
		}
		return role, name, nil
	}
	if a.cfg.RequireClientCert {
		return "", "", errorf(http.StatusUnauthorized, CodeUnauthorized, "", "a verified client certificate is required")
	}
	if isLoopback(r.RemoteAddr) {
		return RoleAdmin, audit.ActorCLI, nil
	}
	return "", "", errorf(http.StatusForbidden, CodeForbidden, "", "no API token file is configured: the API answers loopback clients only")
}

// CertificateActor is the audit trail's actor of a client presenting a
// verified certificate: its subject (CN=terraform,OU=admin, say). The REST
// and gRPC APIs both use it.
func CertificateActor(cert *x509.Certificate) string {
	return cert.Subject.String()
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
		role, actor, err := a.authenticate(r)
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
		h.ServeHTTP(w, r.WithContext(audit.WithActor(r.Context(), actor)))
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
