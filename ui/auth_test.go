package ui_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/matchbox"
)

// sessionCookie returns the session cookie a client's jar holds.
func (c *console) sessionCookie(t *testing.T, cl *http.Client) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(c.srv.URL + "/ui/")
	for _, ck := range cl.Jar.Cookies(u) {
		if ck.Name == "matchbox_session" {
			return ck
		}
	}
	t.Fatal("no session cookie")
	return nil
}

// replay makes a request with only the given cookie, as a client that kept
// it past its expiry or its logout would.
func (c *console) replay(t *testing.T, ck *http.Cookie, method, path string, form url.Values) (int, string, http.Header) {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, c.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	cl := c.srv.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

// TestSessionExpiry: with a one-second session TTL, the cookie says so
// (Max-Age=1), and once the second is over the server no longer honours
// it, even replayed by a client that kept it: pages redirect to the login
// page and actions are refused, changing nothing.
func TestSessionExpiry(t *testing.T) {
	c := newConsoleOpts(t, consoleOpts{tokens: true, sessionTTL: time.Second})
	c.putMachine(t, &matchbox.Machine{ID: "m1", State: matchbox.StateReady})
	cl, csrf := c.login(t, adminToken)
	ck := c.sessionCookie(t, cl)
	if status, _, _ := c.replay(t, ck, "GET", "/ui/machines/m1", nil); status != http.StatusOK {
		t.Fatalf("fresh session: status %d", status)
	}
	time.Sleep(1200 * time.Millisecond)
	status, _, h := c.replay(t, ck, "GET", "/ui/machines/m1", nil)
	if status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("expired session: status %d to %q, want 303 to /ui/login", status, h.Get("Location"))
	}
	if status, _, _ := c.replay(t, ck, "POST", "/ui/machines/m1/state", url.Values{"csrf": {csrf}, "state": {"failed"}}); status != http.StatusUnauthorized {
		t.Fatalf("action in an expired session: status %d, want 401", status)
	}
	if st, _ := c.machineState(t, "m1"); st != matchbox.StateReady {
		t.Fatalf("an expired session's action changed the state to %s", st)
	}
	// A browser drops the cookie itself; the console sends it to log in.
	if status, _, h := do(t, cl, "GET", c.srv.URL+"/ui/", nil); status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("expired session in the browser: status %d to %q", status, h.Get("Location"))
	}
}

// TestLogout: logging out needs the session's CSRF token, clears the
// cookie, and ends the session on the server: the old cookie, replayed,
// no longer works.
func TestLogout(t *testing.T) {
	c := newConsole(t, true)
	cl, csrf := c.login(t, readToken)
	ck := c.sessionCookie(t, cl)
	if status, _, _ := do(t, cl, "POST", c.srv.URL+"/ui/logout", url.Values{}); status != http.StatusForbidden {
		t.Fatalf("logout without CSRF token: status %d, want 403", status)
	}
	if status, _, _ := c.replay(t, ck, "GET", "/ui/", nil); status != http.StatusOK {
		t.Fatalf("a refused logout ended the session: status %d", status)
	}
	status, _, h := do(t, cl, "POST", c.srv.URL+"/ui/logout", url.Values{"csrf": {csrf}})
	if status != http.StatusSeeOther || h.Get("Location") != "/ui/login" || !strings.Contains(h.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: status %d to %q, Set-Cookie %q", status, h.Get("Location"), h.Get("Set-Cookie"))
	}
	if status, _, h := c.replay(t, ck, "GET", "/ui/", nil); status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("the logged-out cookie replayed: status %d to %q, want 303 to /ui/login", status, h.Get("Location"))
	}
}

// testCA issues certificates for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// client issues a client certificate with the organizational units ous.
func (ca *testCA) client(t *testing.T, cn string, ous ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ous},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClientCertificateLogin: under mutual TLS (the API's rules: a client
// certificate is verified when sent, its role read when its OU says so,
// admin otherwise) a browser with a certificate is signed in without a
// token, and its session is bound to the certificate; without one, it is
// sent to the login page.
func TestClientCertificateLogin(t *testing.T) {
	ca := newTestCA(t, "matchbox test CA")
	c := newConsoleOpts(t, consoleOpts{tokens: true, tls: &tls.Config{ClientCAs: ca.pool, ClientAuth: tls.VerifyClientCertIfGiven}})
	c.putMachine(t, &matchbox.Machine{ID: "m1", State: matchbox.StateReady})
	browserWith := func(certs ...tls.Certificate) *http.Client {
		tr := c.srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = certs
		jar, _ := cookiejar.New(nil)
		return &http.Client{Transport: tr, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}

	admin := browserWith(ca.client(t, "operator", "ops"))
	status, page, h := do(t, admin, "GET", c.srv.URL+"/ui/machines/m1", nil)
	if status != http.StatusOK || !strings.Contains(page, "role: admin") || !strings.Contains(page, `action="/ui/machines/m1/state"`) {
		t.Fatalf("admin certificate: status %d\n%s", status, page)
	}
	if ck := h.Get("Set-Cookie"); !strings.Contains(ck, "Secure") || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Errorf("session cookie over TLS: %q, want Secure, HttpOnly, SameSite=Strict", ck)
	}
	if status, _, _ := do(t, admin, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {csrfOf(t, page)}, "state": {"failed"}}); status != http.StatusSeeOther {
		t.Fatalf("admin certificate's action: status %d", status)
	}
	if st, _ := c.machineState(t, "m1"); st != matchbox.StateFailed {
		t.Fatalf("state after the admin certificate's action: %s", st)
	}

	reader := browserWith(ca.client(t, "auditor", "read"))
	status, page, _ = do(t, reader, "GET", c.srv.URL+"/ui/machines/m1", nil)
	if status != http.StatusOK || !strings.Contains(page, "role: read") || strings.Contains(page, `action="/ui/machines/m1/`) {
		t.Fatalf("read certificate: status %d, or action forms shown\n%s", status, page)
	}
	if status, _, _ := do(t, reader, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {csrfOf(t, page)}, "state": {"ready"}}); status != http.StatusForbidden {
		t.Fatalf("read certificate's action: status %d, want 403", status)
	}

	// Without a certificate: the login page. With the admin's session
	// cookie but no certificate: the login page too.
	anon := browserWith()
	if status, _, h := do(t, anon, "GET", c.srv.URL+"/ui/", nil); status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("no certificate: status %d to %q", status, h.Get("Location"))
	}
	if status, _, h := c.replay(t, c.sessionCookie(t, admin), "GET", "/ui/", nil); status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("the certificate session's cookie without the certificate: status %d to %q", status, h.Get("Location"))
	}
	// A certificate from another CA, sent anyway (Go's client sends only
	// a certificate of a CA the server names), is refused in the handshake.
	rogueCert := newTestCA(t, "rogue CA").client(t, "mallory", "ops")
	rogue := browserWith()
	rogue.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogueCert, nil }
	if resp, err := rogue.Get(c.srv.URL + "/ui/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate of another CA: status %d, want a refused handshake", resp.StatusCode)
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoTokenInURLsOrLogs: logging in, failing to, acting, failing to act
// and logging out put no API token in any URL the server sends the browser
// to, and none in the API's, the console's or the HTTP server's log at
// debug level.
func TestNoTokenInURLsOrLogs(t *testing.T) {
	var logs lockedBuffer
	c := newConsoleOpts(t, consoleOpts{tokens: true, logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c.putMachine(t, &matchbox.Machine{ID: "m1", State: matchbox.StateReady})
	const wrongToken = "wrong-token-5f0c9e2a7b"
	tokens := []string{adminToken, readToken, wrongToken}
	var locations []string
	record := func(h http.Header) {
		if l := h.Get("Location"); l != "" {
			locations = append(locations, l)
		}
	}

	anon := c.browser(t)
	_, page, _ := do(t, anon, "GET", c.srv.URL+"/ui/login", nil)
	if !strings.Contains(page, `<form method="post" action="/ui/login"`) || !strings.Contains(page, `type="password"`) {
		t.Fatalf("the login form does not post a password field:\n%s", page)
	}
	status, _, h := do(t, anon, "POST", c.srv.URL+"/ui/login", url.Values{"token": {wrongToken}})
	record(h)
	if status != http.StatusUnauthorized {
		t.Fatalf("wrong token: status %d", status)
	}
	for _, tok := range []string{readToken, adminToken} {
		cl := c.browser(t)
		status, _, h := do(t, cl, "POST", c.srv.URL+"/ui/login", url.Values{"token": {tok}})
		record(h)
		if status != http.StatusSeeOther {
			t.Fatalf("login: status %d", status)
		}
		_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/machines/m1", nil)
		csrf := csrfOf(t, page)
		for _, form := range []url.Values{{"state": {"failed"}}, {"state": {"bogus"}}} {
			form.Set("csrf", csrf)
			_, _, h := do(t, cl, "POST", c.srv.URL+"/ui/machines/m1/state", form)
			record(h)
		}
		_, _, h = do(t, cl, "POST", c.srv.URL+"/ui/logout", url.Values{"csrf": {csrf}})
		record(h)
	}
	// The token in the URL of a misdirected client is not honoured.
	if status, _, _ := do(t, anon, "GET", c.srv.URL+"/ui/?token="+adminToken, nil); status != http.StatusSeeOther {
		t.Fatalf("a token in the URL signed in: status %d", status)
	}

	got := logs.String()
	for _, want := range []string{"console login", "console login refused", "console logout"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the log lacks %q: it is not captured\n%s", want, got)
		}
	}
	for _, tok := range tokens {
		if strings.Contains(got, tok) {
			t.Errorf("the log holds a token:\n%s", got)
		}
		for _, l := range locations {
			if strings.Contains(l, tok) {
				t.Errorf("a redirect carries a token: %s", l)
			}
		}
	}
	if len(locations) < 5 {
		t.Fatalf("only %d redirects seen: %v", len(locations), locations)
	}
}
