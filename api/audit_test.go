package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gorilla/mux"
	"net/http/httptest"

	"matchbox/api/wire"
	"matchbox/audit"
	"matchbox/store"
)

// lines returns the JSON log lines whose msg is msg.
func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// newAuditServer is the API over a real store that logs as JSON into the
// returned buffer, with tokens named alice (admin) and reader (read).
func newAuditServer(t *testing.T) (*testServer, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db"), Synchronous: "NORMAL", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tokens := testTokens(t, adminToken+" admin alice\n"+readToken+" read reader\n")
	a, err := New(Config{Store: st, Tokens: tokens, Audit: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, store: st, router: r}, &logs
}

// TestAuditDeleteByToken: an API delete is one audit record naming the
// token's name and the versions, and one INFO log line saying the same; a
// refused write records nothing.
func TestAuditDeleteByToken(t *testing.T) {
	s, logs := newAuditServer(t)
	admin := "Authorization: Bearer " + adminToken
	s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id":"p","boot":{"kernel":"/k"}}`, admin)
	s.must(t, http.StatusOK, "PUT", "/api/v1/profiles/p", `{"id":"p","boot":{"kernel":"/k2"}}`, admin)

	var before wire.AuditList
	s.must(t, http.StatusOK, "GET", "/api/v1/audit", "", admin).decode(t, &before)
	logsBefore := len(logs.lines(t, "audit"))

	// Refused writes: stale If-Match (refused inside the store's
	// transaction), a body naming another id, a reader's delete.
	s.must(t, http.StatusPreconditionFailed, "DELETE", "/api/v1/profiles/p", "", admin, `If-Match: "1"`)
	s.must(t, http.StatusPreconditionFailed, "PUT", "/api/v1/profiles/p", `{"id":"p","boot":{"kernel":"/k3"}}`, admin, `If-Match: "1"`)
	s.must(t, http.StatusBadRequest, "PUT", "/api/v1/profiles/p", `{"id":"q","boot":{"kernel":"/k"}}`, admin)
	s.must(t, http.StatusForbidden, "DELETE", "/api/v1/profiles/p", "", "Authorization: Bearer "+readToken)
	var after wire.AuditList
	s.must(t, http.StatusOK, "GET", "/api/v1/audit", "", admin).decode(t, &after)
	if len(after.Records) != len(before.Records) || len(logs.lines(t, "audit")) != logsBefore {
		t.Fatalf("refused writes were audited: %d records (was %d): %+v", len(after.Records), len(before.Records), after.Records)
	}

	s.must(t, http.StatusNoContent, "DELETE", "/api/v1/profiles/p", "", admin)
	var got wire.AuditList
	s.must(t, http.StatusOK, "GET", "/api/v1/audit?object=profile/p&since=1h", "", "Authorization: Bearer "+readToken).decode(t, &got)
	want := []audit.Record{
		{Actor: "alice", Action: "create", Kind: "profile", Object: "p", VersionAfter: 1},
		{Actor: "alice", Action: "update", Kind: "profile", Object: "p", VersionBefore: 1, VersionAfter: 2},
		{Actor: "alice", Action: "delete", Kind: "profile", Object: "p", VersionBefore: 2},
	}
	if diff := cmp.Diff(want, got.Records, cmpopts.IgnoreFields(audit.Record{}, "ID", "At")); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
	lines := logs.lines(t, "audit")
	if len(lines) != logsBefore+1 {
		t.Fatalf("%d audit log lines after the delete, want %d", len(lines), logsBefore+1)
	}
	last := lines[len(lines)-1]
	wantLine := map[string]any{"level": "INFO", "msg": "audit", "actor": "alice", "action": "delete", "kind": "profile", "id": "p", "version_before": 2.0, "version_after": 0.0}
	delete(last, "time")
	if diff := cmp.Diff(wantLine, last); diff != "" {
		t.Errorf("audit log line (-want +got):\n%s", diff)
	}
}

// TestAuditList: the audit trail's filters and pages, and refused queries.
func TestAuditList(t *testing.T) {
	s, _ := newAuditServer(t)
	admin := "Authorization: Bearer " + adminToken
	for _, id := range []string{"a", "b", "c"} {
		s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id":"`+id+`","boot":{"kernel":"/k"}}`, admin)
	}
	s.must(t, http.StatusCreated, "POST", "/api/v1/machines", `{"id":"m1","labels":{"rack":"r1"}}`, admin)
	s.must(t, http.StatusOK, "PUT", "/api/v1/machines/m1/labels", `{"labels":{"rack":"r2"}}`, admin)
	s.must(t, http.StatusNoContent, "DELETE", "/api/v1/machines/m1", "", admin)

	ids := func(path string) (out []string, next int64) {
		t.Helper()
		var l wire.AuditList
		s.must(t, http.StatusOK, "GET", path, "", admin).decode(t, &l)
		for _, r := range l.Records {
			out = append(out, r.Action+" "+r.Kind+"/"+r.Object)
		}
		return out, l.Next
	}
	tests := []struct {
		path string
		want []string
	}{
		{"/api/v1/audit?object=profile", []string{"create profile/a", "create profile/b", "create profile/c"}},
		{"/api/v1/audit?object=machine/m1", []string{"create machine/m1", "update machine/m1", "delete machine/m1"}},
		{"/api/v1/audit?actor=alice&object=profile/b", []string{"create profile/b"}},
		{"/api/v1/audit?actor=nobody", nil},
		{"/api/v1/audit?since=2999-01-01T00:00:00Z", nil},
	}
	for _, tc := range tests {
		got, _ := ids(tc.path)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.path, diff)
		}
	}
	// Pages of two.
	var all []string
	path := "/api/v1/audit?limit=2"
	for range 10 {
		page, next := ids(path)
		all = append(all, page...)
		if next == 0 {
			break
		}
		path = "/api/v1/audit?limit=2&after=" + jsonInt(next)
	}
	if len(all) != 6 {
		t.Errorf("paged audit trail: %v, want 6 records", all)
	}
	for _, bad := range []string{"object=planet/x", "since=yesterday", "after=x", "limit=0"} {
		if r := s.call(t, "GET", "/api/v1/audit?"+bad, "", admin); r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, r.status)
		}
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestTokenReloadChanges: a reload names the tokens it adds, removes or
// gives another role, by name.
func TestTokenReloadChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(adminToken+" admin alice\n"+readToken+" read\n"), 0o600)
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, name, _ := tokens.Identify(readToken); !strings.HasPrefix(name, "token-") || len(name) != len("token-")+8 {
		t.Errorf("unnamed token's name %q, want token-<8 hex digits>", name)
	}
	third := "third-token-0123456789"
	os.WriteFile(path, []byte(adminToken+" read alice\n"+third+" admin ci\n"), 0o600)
	got, err := tokens.ReloadChanges()
	if err != nil {
		t.Fatal(err)
	}
	_, oldName, _ := LoadTokensName(t, readToken)
	want := []audit.Record{
		{Action: audit.ActionTokenRole, Kind: audit.KindToken, Object: "alice", Detail: "alice (role admin) -> alice (role read)"},
		{Action: audit.ActionTokenAdd, Kind: audit.KindToken, Object: "ci", Detail: "role admin"},
		{Action: audit.ActionTokenRemove, Kind: audit.KindToken, Object: oldName, Detail: "role read"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reload changes (-want +got):\n%s", diff)
	}
	os.WriteFile(path, []byte(adminToken+" read a\n"+third+" admin a\n"), 0o600)
	if _, err := tokens.ReloadChanges(); err == nil || !strings.Contains(err.Error(), `name "a" is used twice`) {
		t.Errorf("two tokens of one name: %v", err)
	}
}

// LoadTokensName returns the role and name a file of the one token gives
// it (its default name when unnamed).
func LoadTokensName(t *testing.T, token string) (Role, string, bool) {
	t.Helper()
	return testTokens(t, token+" read\n").Identify(token)
}
