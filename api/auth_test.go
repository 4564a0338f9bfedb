package api

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	readToken  = "read-token-0123456789"
	adminToken = "admin-token-0123456789"
)

func TestTokensFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr string
		lookups map[string]Role // token -> role, "" for refused
	}{
		{
			name:    "roles and comments",
			file:    "# operators\n" + adminToken + " admin\n\n" + readToken + " read # dashboards\n",
			lookups: map[string]Role{adminToken: RoleAdmin, readToken: RoleRead, "admin-token-012345678": "", "": ""},
		},
		{name: "unknown role", file: adminToken + " root\n", wantErr: ":1: role \"root\""},
		{name: "missing role", file: "# x\n" + adminToken + "\n", wantErr: ":2: want `<token> <role> [<name>]`"},
		{name: "short token", file: "abc admin\n", wantErr: ":1: token is shorter than 16 characters"},
		{name: "empty file", file: "", lookups: map[string]Role{adminToken: ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens")
			os.WriteFile(path, []byte(tt.file), 0o600)
			tokens, err := LoadTokens(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for tok, want := range tt.lookups {
				role, ok := tokens.Lookup(tok)
				if ok != (want != "") || role != want {
					t.Errorf("Lookup(%q) = %q, %v; want %q", tok, role, ok, want)
				}
			}
		})
	}
}

func TestTokensReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(readToken+" read\n"), 0o600)
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(readToken+" admin\n"), 0o600)
	if err := tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if role, _ := tokens.Lookup(readToken); role != RoleAdmin {
		t.Fatalf("after reload: role %q", role)
	}
	os.WriteFile(path, []byte("broken\n"), 0o600)
	if err := tokens.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if role, _ := tokens.Lookup(readToken); role != RoleAdmin {
		t.Fatalf("a failed reload changed the set: role %q", role)
	}
}

// testTokens loads a tokens file of the given lines.
func testTokens(t *testing.T, lines string) *Tokens {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestAPIAuthRoles(t *testing.T) {
	tokens := testTokens(t, adminToken+" admin\n"+readToken+" read\n")
	s := newTestServer(t, Config{Tokens: tokens})
	profile := `{"id": "p", "boot": {"kernel": "/k"}}`
	bundle := `{"files": {"profiles/q.yaml": "id: q\n"}}`
	tests := []struct {
		name, auth, method, path, body string
		status                         int
	}{
		{"no token", "", "GET", "/api/v1/profiles", "", 401},
		{"wrong scheme", "Basic " + adminToken, "GET", "/api/v1/profiles", "", 401},
		{"unknown token", "Bearer nobody-0123456789", "GET", "/api/v1/profiles", "", 401},
		{"no token on an unknown path", "", "GET", "/api/v1/nothing", "", 401},
		{"reader lists", "Bearer " + readToken, "GET", "/api/v1/profiles", "", 200},
		{"reader reads the OpenAPI document", "Bearer " + readToken, "GET", "/api/v1/openapi.json", "", 200},
		{"reader may not create", "Bearer " + readToken, "POST", "/api/v1/profiles", profile, 403},
		{"reader may not delete", "Bearer " + readToken, "DELETE", "/api/v1/profiles/p", "", 403},
		{"reader may not apply", "Bearer " + readToken, "POST", "/api/v1/apply", bundle, 403},
		{"reader may plan", "Bearer " + readToken, "POST", "/api/v1/plan", bundle, 200},
		{"admin creates", "Bearer " + adminToken, "POST", "/api/v1/profiles", profile, 201},
		{"admin deletes", "bearer " + adminToken, "DELETE", "/api/v1/profiles/p", "", 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var headers []string
			if tt.auth != "" {
				headers = append(headers, "Authorization: "+tt.auth)
			}
			r := s.must(t, tt.status, tt.method, tt.path, tt.body, headers...)
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.status >= 400 && r.errorCode() == "" {
				t.Fatalf("error without a code: %s", r.body)
			}
		})
	}
}

func TestAPILoopbackOnlyWithoutTokens(t *testing.T) {
	s := newTestServer(t, Config{})
	// Through the real listener, which is loopback.
	s.must(t, http.StatusOK, "GET", "/api/v1/profiles", "")
	// A remote client cannot be made over the loopback test listener: the
	// router sees the remote address as the server would.
	tests := []struct {
		remote string
		status int
	}{
		{"192.0.2.10:40000", http.StatusForbidden},
		{"[2001:db8::1]:40000", http.StatusForbidden},
		{"10.0.0.1:1", http.StatusForbidden},
		{"127.0.0.1:40000", http.StatusOK},
		{"127.8.9.1:40000", http.StatusOK},
		{"[::1]:40000", http.StatusOK},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/api/v1/profiles", nil)
		req.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		s.router.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("remote %s: status %d, want %d: %s", tt.remote, rec.Code, tt.status, rec.Body)
		}
		if tt.status == http.StatusForbidden && !strings.Contains(rec.Body.String(), `"code": "forbidden"`) {
			t.Errorf("remote %s: body %s", tt.remote, rec.Body)
		}
	}
}
