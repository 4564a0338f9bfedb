package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"matchbox/api/wire"
	"matchbox/store"
)

// testServer is the API over a real store, served through real HTTP.
type testServer struct {
	*httptest.Server
	store  *store.Store
	router *mux.Router
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	if cfg.Leases == nil {
		cfg.Leases = st
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, store: st, router: r}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) errorCode() string {
	var e wire.Error
	json.Unmarshal([]byte(r.body), &e)
	return e.Error.Code
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// call sends a request; headers are "Name: value" strings. A body without
// a Content-Type header is sent as application/json.
func (s *testServer) call(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (s *testServer) must(t *testing.T, want int, method, path, body string, headers ...string) response {
	t.Helper()
	r := s.call(t, method, path, body, headers...)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

func TestAPICRUD(t *testing.T) {
	tests := []struct {
		name       string
		setup      [][3]string // method, path, body
		collection string
		id         string
		create     string
		replace    string
		stale      string // a replacement sent with the old ETag
		wantField  string // a string the stored object holds after replace
	}{
		{
			name: "profile", collection: "/api/v1/profiles", id: "etcd",
			create:  `{"id": "etcd", "boot": {"kernel": "/k1"}}`,
			replace: `{"id": "etcd", "boot": {"kernel": "/k2"}}`,
			stale:   `{"id": "etcd", "boot": {"kernel": "/k3"}}`, wantField: `"/k2"`,
		},
		{
			name:       "group",
			setup:      [][3]string{{"POST", "/api/v1/profiles", `{"id": "p", "boot": {"kernel": "/k"}}`}},
			collection: "/api/v1/groups", id: "node1",
			create:  `{"id": "node1", "profile": "p", "selector": {"mac": "52:54:00:00:00:01"}}`,
			replace: `{"id": "node1", "profile": "p", "selector": {"mac": "52:54:00:00:00:02"}}`,
			stale:   `{"id": "node1", "profile": "p", "selector": {"mac": "52:54:00:00:00:03"}}`, wantField: `"52:54:00:00:00:02"`,
		},
		{
			name: "ignition template", collection: "/api/v1/templates/ignition", id: "etcd.ign",
			create:  `{"name": "etcd.ign", "content": "{\"ignition\": {\"version\": \"3.4.0\"}}"}`,
			replace: `{"name": "etcd.ign", "content": "{\"ignition\": {\"version\": \"3.3.0\"}}"}`,
			stale:   `{"name": "etcd.ign", "content": "{\"ignition\": {\"version\": \"3.2.0\"}}"}`, wantField: `3.3.0`,
		},
		{
			name: "generic template", collection: "/api/v1/templates/generic", id: "hello.txt",
			create:  `{"name": "hello.txt", "content": "hello {{.mac}}"}`,
			replace: `{"content": "bye {{.mac}}"}`,
			stale:   `{"content": "stale"}`, wantField: `bye`,
		},
		{
			name: "machine", collection: "/api/v1/machines", id: "rack1-01",
			create:  `{"id": "rack1-01", "macs": ["52-54-00-aa-bb-01"], "labels": {"rack": "r1"}}`,
			replace: `{"id": "rack1-01", "macs": ["52:54:00:aa:bb:01"], "labels": {"rack": "r2"}, "state": "ready"}`,
			stale:   `{"id": "rack1-01", "labels": {"rack": "r3"}}`, wantField: `"r2"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			for _, st := range tt.setup {
				s.must(t, http.StatusCreated, st[0], st[1], st[2])
			}
			item := tt.collection + "/" + tt.id
			r := s.must(t, http.StatusCreated, "POST", tt.collection, tt.create)
			if r.header.Get("ETag") != `"1"` || r.header.Get("Location") != item {
				t.Fatalf("create: ETag %q Location %q", r.header.Get("ETag"), r.header.Get("Location"))
			}
			if r := s.must(t, http.StatusConflict, "POST", tt.collection, tt.create); r.errorCode() != CodeAlreadyExists {
				t.Fatalf("second create: %s", r.body)
			}
			if r := s.must(t, http.StatusOK, "GET", item, ""); r.header.Get("ETag") != `"1"` {
				t.Fatalf("get: ETag %q", r.header.Get("ETag"))
			}
			r = s.must(t, http.StatusOK, "PUT", item, tt.replace, `If-Match: "1"`)
			if r.header.Get("ETag") != `"2"` {
				t.Fatalf("replace: ETag %q", r.header.Get("ETag"))
			}
			if r := s.must(t, http.StatusPreconditionFailed, "PUT", item, tt.stale, `If-Match: "1"`); r.errorCode() != CodeVersionConflict {
				t.Fatalf("stale replace: %s", r.body)
			}
			r = s.must(t, http.StatusOK, "GET", item, "")
			if r.header.Get("ETag") != `"2"` || !strings.Contains(r.body, tt.wantField) {
				t.Fatalf("after a refused stale write: ETag %q body %s", r.header.Get("ETag"), r.body)
			}
			var list wire.List
			s.must(t, http.StatusOK, "GET", tt.collection, "").decode(t, &list)
			if len(list.Items) != 1 || list.Items[0].ID != tt.id {
				t.Fatalf("list: %+v", list)
			}
			for _, tag := range []string{`"1"`, `"abc"`, `W/"2"`, `"2", "3"`, `"-1"`} { // RFC 9110: any tag that does not match fails
				if r := s.must(t, http.StatusPreconditionFailed, "DELETE", item, "", "If-Match: "+tag); r.errorCode() != CodeVersionConflict {
					t.Fatalf("delete If-Match %s: %s", tag, r.body)
				}
			}
			s.must(t, http.StatusNoContent, "DELETE", item, "", `If-Match: "2"`)
			if r := s.must(t, http.StatusNotFound, "GET", item, ""); r.errorCode() != CodeNotFound {
				t.Fatalf("get after delete: %s", r.body)
			}
			s.must(t, http.StatusNotFound, "DELETE", item, "")
			s.must(t, http.StatusPreconditionFailed, "PUT", item, tt.replace, `If-Match: "2"`)
			s.must(t, http.StatusPreconditionFailed, "PUT", item, tt.replace, `If-Match: "opaque-etag"`)
			s.must(t, http.StatusCreated, "PUT", item, tt.replace)
		})
	}
}

func TestAPIYAMLInput(t *testing.T) {
	s := newTestServer(t, Config{})
	tests := []struct {
		contentType, path, body, check string
	}{
		{"application/yaml", "/api/v1/profiles", "id: etcd\nboot:\n  kernel: /assets/vmlinuz\n  args: [console=ttyS0]\n", "/api/v1/profiles/etcd"},
		{"text/yaml; charset=utf-8", "/api/v1/groups", "id: g\nprofile: etcd\nselector:\n  os: installed\n", "/api/v1/groups/g"},
		{"application/x-yaml", "/api/v1/machines", "id: m1\nlabels:\n  rack: r1\n", "/api/v1/machines/m1"},
		{"text/plain", "/api/v1/templates/generic", "", ""}, // placeholder replaced below
	}
	for _, tt := range tests[:3] {
		s.must(t, http.StatusCreated, "POST", tt.path, tt.body, "Content-Type: "+tt.contentType)
		r := s.must(t, http.StatusOK, "GET", tt.check, "")
		if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("answer is not JSON: %q", r.header.Get("Content-Type"))
		}
	}
	var p struct {
		Boot struct{ Args []string } `json:"boot"`
	}
	s.must(t, http.StatusOK, "GET", "/api/v1/profiles/etcd", "").decode(t, &p)
	if len(p.Boot.Args) != 1 || p.Boot.Args[0] != "console=ttyS0" {
		t.Fatalf("YAML profile stored as %+v", p)
	}
	// Template content may be sent as plain text.
	s.must(t, http.StatusCreated, "PUT", "/api/v1/templates/generic/motd", "hello {{.mac}}\n", "Content-Type: text/plain")
	r := s.must(t, http.StatusOK, "GET", "/api/v1/templates/generic/motd", "")
	if !strings.Contains(r.body, `"content": "hello {{.mac}}\n"`) {
		t.Fatalf("text template stored as %s", r.body)
	}
}

func TestAPIErrors(t *testing.T) {
	s := newTestServer(t, Config{MaxBodyBytes: 1024})
	s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id": "p", "boot": {"kernel": "/k"}}`)
	big := `{"id": "big", "name": "` + strings.Repeat("x", 2000) + `"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code, field              string
	}{
		{"unknown content type", "POST", "/api/v1/profiles", `id=x`, []string{"Content-Type: application/x-www-form-urlencoded"}, 415, CodeUnsupportedType, "Content-Type"},
		{"text for a profile", "POST", "/api/v1/profiles", `id: x`, []string{"Content-Type: text/plain"}, 415, CodeUnsupportedType, "Content-Type"},
		{"body too large", "POST", "/api/v1/profiles", big, nil, 413, CodeTooLarge, ""},
		{"bundle too large", "POST", "/api/v1/plan", `{"files": {"profiles/a.yaml": "` + strings.Repeat("y", 2000) + `"}}`, nil, 413, CodeTooLarge, ""},
		{"bad JSON type names the field", "POST", "/api/v1/groups", "{\"id\": \"g\",\n \"profile\": \"p\",\n \"selector\": {\"mac\": 7}}", nil, 400, CodeInvalidBody, "request body"},
		{"empty body", "POST", "/api/v1/profiles", " ", nil, 400, CodeInvalidBody, ""},
		{"id differs from path", "PUT", "/api/v1/profiles/a", `{"id": "b"}`, nil, 400, CodeInvalidBody, "id"},
		{"invalid machine state", "POST", "/api/v1/machines", `{"id": "m", "state": "asleep"}`, nil, 400, CodeInvalidBody, "state"},
		{"invalid MAC", "POST", "/api/v1/machines", `{"id": "m", "macs": ["nope"]}`, nil, 400, CodeInvalidBody, "macs[0]"},
		{"unknown machine field", "POST", "/api/v1/machines", `{"id": "m", "colour": "red"}`, nil, 400, CodeInvalidBody, "colour"},
		{"malformed If-Match", "PUT", "/api/v1/profiles/p", `{"id": "p"}`, []string{"If-Match: soon"}, 400, CodeBadRequest, "If-Match"},
		{"unknown template kind", "GET", "/api/v1/templates/butane/x", "", nil, 404, CodeNotFound, "kind"},
		{"unknown path", "GET", "/api/v1/nothing", "", nil, 404, CodeNotFound, ""},
		{"method not allowed", "PATCH", "/api/v1/profiles/p", `{}`, nil, 405, CodeMethodNotAllowed, ""},
		{"bad limit", "GET", "/api/v1/profiles?limit=0", "", nil, 400, CodeBadRequest, "limit"},
		{"bad since", "GET", "/api/v1/machines/x/events?since=yesterday", "", nil, 400, CodeBadRequest, "since"},
		{"events of a missing machine", "GET", "/api/v1/machines/x/events", "", nil, 404, CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.must(t, tt.status, tt.method, tt.path, tt.body, tt.headers...)
			var e wire.Error
			r.decode(t, &e)
			if e.Error.Code != tt.code || e.Error.Field != tt.field || e.Error.Message == "" {
				t.Fatalf("error %+v, want code %q field %q", e.Error, tt.code, tt.field)
			}
		})
	}
	// Nothing of the refused writes was stored.
	var list wire.List
	s.must(t, http.StatusOK, "GET", "/api/v1/profiles", "").decode(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("profiles after refused writes: %+v", list.Items)
	}
}

// TestAPIDanglingReferences: single-object writes store references to
// objects not yet written (as v0.11 did) and warn; reads name them; a
// bundle that would leave one dangling is refused.
func TestAPIDanglingReferences(t *testing.T) {
	s := newTestServer(t, Config{})
	warned := func(r response, want string) {
		t.Helper()
		for _, w := range r.header.Values("Warning") {
			if strings.Contains(w, "dangling reference") && strings.Contains(w, want) {
				return
			}
		}
		t.Errorf("no dangling-reference warning naming %s in %q", want, r.header.Values("Warning"))
	}
	r := s.must(t, http.StatusCreated, "POST", "/api/v1/groups", `{"id": "g", "profile": "p"}`)
	warned(r, `profile \"p\" does not exist`)
	r = s.must(t, http.StatusCreated, "PUT", "/api/v1/profiles/p", `{"id": "p", "ignition_id": "p.yaml"}`)
	warned(r, `ignition_id \"p.yaml\"`)
	if got := r.header.Values("Warning"); len(got) != 1 {
		t.Errorf("the profile's write warns of %q; want only the reference it introduced", got)
	}
	warned(s.must(t, http.StatusOK, "GET", "/api/v1/profiles", ""), `ignition_id \"p.yaml\"`)
	warned(s.must(t, http.StatusOK, "GET", "/api/v1/profiles/p", ""), `ignition_id \"p.yaml\"`)
	if got := s.must(t, http.StatusOK, "GET", "/api/v1/groups/g", "").header.Values("Warning"); len(got) != 0 {
		t.Errorf("group g, whose profile exists now, warns %q", got)
	}

	// A bundle may not add a dangling reference, in plan or apply.
	bundle := `{"files": {"groups/h.yaml": "id: h\nprofile: absent\nselector: {os: x}\n"}}`
	for _, path := range []string{"/api/v1/plan", "/api/v1/apply"} {
		r := s.must(t, http.StatusUnprocessableEntity, "POST", path, bundle)
		if r.errorCode() != CodeInvalidCatalog || !strings.Contains(r.body, `profile \"absent\" does not exist`) {
			t.Errorf("%s of a bundle with a dangling group: %s", path, r.body)
		}
	}
	s.must(t, http.StatusNotFound, "GET", "/api/v1/groups/h", "")
	// A plan that adds none lists those the catalog holds among its warnings.
	var plan wire.Plan
	s.must(t, http.StatusOK, "POST", "/api/v1/plan", `{"files": {"generic/other": "x"}}`).decode(t, &plan)
	if !slices.ContainsFunc(plan.Warnings, func(w string) bool {
		return strings.Contains(w, `dangling reference: profile "p": ignition_id "p.yaml"`)
	}) {
		t.Errorf("plan warnings %q do not name the catalog's dangling reference", plan.Warnings)
	}
	// One that resolves the existing reference applies, and warns no more.
	s.must(t, http.StatusOK, "POST", "/api/v1/apply", `{"files": {"ignition/p.yaml": "variant: flatcar\nversion: 1.0.0\n"}}`)
	if got := s.must(t, http.StatusOK, "GET", "/api/v1/profiles", "").header.Values("Warning"); len(got) != 0 {
		t.Errorf("warnings after the reference was resolved: %q", got)
	}
	// Deleting a profile groups name leaves them, with one warning that
	// says the profile is deleted and names every group that names it.
	s.must(t, http.StatusCreated, "POST", "/api/v1/groups", `{"id": "g2", "profile": "p", "selector": {"os": "x"}}`)
	s.must(t, http.StatusCreated, "POST", "/api/v1/groups", `{"id": "other", "profile": "q", "selector": {"os": "y"}}`)
	r = s.must(t, http.StatusNoContent, "DELETE", "/api/v1/profiles/p", "")
	warned(r, `profile \"p\" is deleted and groups \"g\", \"g2\" still name it`)
	if got := r.header.Values("Warning"); len(got) != 1 || strings.Contains(got[0], `\"other\"`) {
		t.Errorf("delete warnings %q; want one naming g and g2 only", got)
	}
	s.must(t, http.StatusNoContent, "DELETE", "/api/v1/groups/g2", "")
	s.must(t, http.StatusNoContent, "DELETE", "/api/v1/groups/other", "")
	if d := s.store.Snapshot().Dangling(); len(d) != 1 {
		t.Errorf("dangling references after the delete: %q", d)
	}
}

func TestAPIPagination(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id": "`+id+`"}`)
		s.must(t, http.StatusCreated, "POST", "/api/v1/machines", `{"id": "m-`+id+`", "state": "ready"}`)
	}
	for _, coll := range []string{"/api/v1/profiles", "/api/v1/machines"} {
		var ids []string
		next := ""
		for pages := 0; pages < 10; pages++ {
			var l wire.List
			s.must(t, http.StatusOK, "GET", coll+"?limit=2&after="+next, "").decode(t, &l)
			for _, it := range l.Items {
				ids = append(ids, it.ID)
			}
			if next = l.Next; next == "" {
				break
			}
		}
		if len(ids) != 5 || !strings.HasSuffix(ids[0], "a") || !strings.HasSuffix(ids[4], "e") {
			t.Fatalf("%s pages: %v", coll, ids)
		}
	}
	var l wire.List
	s.must(t, http.StatusOK, "GET", "/api/v1/machines?state=discovered", "").decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("state filter: %+v", l.Items)
	}
}
