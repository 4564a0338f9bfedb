package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"matchbox/agent/token"
	"matchbox/lifecycle"
	"matchbox/store"
)

// TestAgentReport: the discovery agent's report is authenticated by the
// machine's agent token, not by API tokens; refusals store nothing and
// answer with their code; a good report creates the machine.
func TestAgentReport(t *testing.T) {
	key := bytes.Repeat([]byte{7}, token.MinKeyLen)
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lc, err := lifecycle.New(lifecycle.Config{Store: st, AgentKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.Close)
	// API tokens are configured: the agent's report must not need one.
	a, err := New(Config{Store: st, Tokens: testTokens(t, "admin-token-0123456789 admin\n")})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	if err := a.RegisterAgent(r, AgentConfig{Key: key, Inventories: lc}); err != nil {
		t.Fatal(err)
	}
	a.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	const id = "52-54-00-00-00-0a"
	good := `{"cpu": {"cores": 8}, "nics": [{"name": "eno1", "mac": "52:54:00:00:00:0a"}]}`
	cases := []struct {
		name        string
		id, tok     string
		contentType string
		body        string
		status      int
		code, field string
	}{
		{name: "no token", id: id, body: good, status: 401, code: CodeUnauthenticated},
		{name: "API token", id: id, tok: "admin-token-0123456789", body: good, status: 403, code: CodeInvalidToken},
		{name: "forged", id: id, tok: "v1.abc.def", body: good, status: 403, code: CodeInvalidToken},
		{name: "another machine's token", id: id, tok: token.Issue(key, "52-54-00-00-00-0b"), body: good, status: 403, code: CodeInvalidToken},
		{name: "signed with another key", id: id, tok: token.Issue(bytes.Repeat([]byte{9}, 32), id), body: good, status: 403, code: CodeInvalidToken},
		{name: "invalid id", id: "a%20b", tok: token.Issue(key, "a b"), body: good, status: 400, code: CodeInvalidID, field: "id"},
		{name: "not JSON", id: id, tok: token.Issue(key, id), contentType: "text/plain", body: good, status: 415, code: CodeUnsupportedType},
		{name: "too large", id: id, tok: token.Issue(key, id), body: `{"x": "` + strings.Repeat("y", maxInventoryBytes) + `"}`, status: 413, code: CodeTooLarge},
		{name: "wrong type names the field", id: id, tok: token.Issue(key, id), body: `{"cpu": {"cores": "many"}}`, status: 400, code: CodeInvalidInventory, field: "cpu.cores"},
		{name: "unknown field", id: id, tok: token.Issue(key, id), body: `{"colour": "red"}`, status: 400, code: CodeInvalidInventory},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := postInventory(t, srv.URL, c.id, c.tok, c.contentType, c.body)
			var e struct {
				Error struct{ Code, Field string }
			}
			json.Unmarshal([]byte(body), &e)
			if status != c.status || e.Error.Code != c.code || e.Error.Field != c.field {
				t.Fatalf("%d %s, want %d with code %s, field %q", status, body, c.status, c.code, c.field)
			}
		})
	}
	if _, _, err := st.Machine(context.Background(), id); err == nil {
		t.Fatal("a refused report created the machine")
	}
	status, body := postInventory(t, srv.URL, id, token.Issue(key, id), "application/json", good)
	var res lifecycle.Enrollment
	if err := json.Unmarshal([]byte(body), &res); status != 200 || err != nil || res.MachineID != id || res.State != "discovered" {
		t.Fatalf("good report: %d %s", status, body)
	}
	if sum, ok := st.LookupMachineByID(id); !ok || sum.Inventory == nil || sum.Inventory.CPU.Cores != 8 {
		t.Fatalf("stored machine: %+v, %v", sum, ok)
	}
}

func postInventory(t *testing.T, base, id, tok, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+Prefix+"/machines/"+id+"/inventory", strings.NewReader(body))
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
