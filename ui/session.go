package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"matchbox/api"
)

// cookieName names the session cookie.
const cookieName = "matchbox_session"

// session is a logged-in user, or a user the API's certificate or loopback
// rule admits (token false: its role is checked again on every request).
type session struct {
	role    api.Role
	token   bool
	csrf    string
	expires time.Time
}

// sessions holds sessions in memory, at most max of them.
type sessions struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]session
	now func() time.Time
}

func newSessions(max int, ttl time.Duration) *sessions {
	return &sessions{max: max, ttl: ttl, m: map[string]session{}, now: time.Now}
}

// randomToken returns 32 random bytes, base64url encoded.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// get returns the live session of r's cookie.
func (s *sessions) get(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[c.Value]
	if !ok {
		return session{}, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, c.Value)
		return session{}, false
	}
	return sess, true
}

// create starts a session and sets its cookie: HttpOnly, SameSite=Strict,
// Secure over TLS, expiring with the session.
func (s *sessions) create(w http.ResponseWriter, r *http.Request, role api.Role, token bool) session {
	id := randomToken()
	now := s.now()
	sess := session{role: role, token: token, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= s.max {
		var oldest string
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(s.m[oldest].expires) {
				oldest = k
			}
		}
		delete(s.m, oldest)
	}
	s.m[id] = sess
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: Prefix, Expires: sess.expires, MaxAge: int(s.ttl / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return sess
}

// end removes r's session and clears its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// len returns how many sessions are held.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// validCSRF compares a form's CSRF token with the session's in constant
// time.
func validCSRF(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.finish(w, r, s.render(w, "login", map[string]any{"Tokens": s.cfg.Auth.TokensConfigured()}))
}

// login exchanges an API token for a session. The token is read from the
// form body only, never logged.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	role, ok := s.cfg.Auth.LookupToken(r.PostForm.Get("token"))
	if !ok {
		s.log.WarnContext(r.Context(), "console login refused: not a valid token", "remote", r.RemoteAddr)
		s.finish(w, r, s.renderStatus(w, http.StatusUnauthorized, "login", map[string]any{"Tokens": s.cfg.Auth.TokensConfigured(), "Error": "That token is not valid."}))
		return
	}
	s.sessions.end(w, r)
	s.sessions.create(w, r, role, true)
	s.log.InfoContext(r.Context(), "console login", "role", role, "remote", r.RemoteAddr)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, u user) error {
	s.sessions.end(w, r)
	s.log.InfoContext(r.Context(), "console logout", "role", u.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}
