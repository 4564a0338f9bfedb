package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"matchbox/api/wire"
	"matchbox/store"
)

func bundleJSON(t *testing.T, prune bool, planID string, files map[string]string) string {
	t.Helper()
	b, err := json.Marshal(wire.PlanRequest{Bundle: wire.Bundle{Files: files}, Prune: prune, PlanID: planID})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *testServer) plan(t *testing.T, path string, want int, prune bool, planID string, files map[string]string) (wire.Plan, response) {
	t.Helper()
	r := s.must(t, want, "POST", path, bundleJSON(t, prune, planID, files))
	var p wire.Plan
	if want == http.StatusOK {
		r.decode(t, &p)
	}
	return p, r
}

// actions renders a plan's changes as "action kind id" lines.
func actions(p wire.Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Action+" "+c.Kind+" "+c.ID)
	}
	return out
}

func equalLines(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

var baseBundle = map[string]string{
	"profiles/etcd.yaml":  "id: etcd\nboot:\n  kernel: /assets/vmlinuz\nignition_id: etcd.yaml\n",
	"profiles/disk.json":  `{"id": "disk", "boot": {"kernel": "/k"}}`,
	"groups/node1.yaml":   "id: node1\nprofile: etcd\nselector:\n  os: installed\n  mac: 52:54:00:00:00:01\n",
	"groups/default.yaml": "id: default\nprofile: disk\n",
	"ignition/etcd.yaml":  "variant: fcos\nversion: 1.5.0\n",
}

func withFiles(base map[string]string, changes map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func TestPlanApplyPrune(t *testing.T) {
	s := newTestServer(t, Config{})
	// An object written through the API and absent from the bundle.
	s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id": "manual"}`)

	p, _ := s.plan(t, "/api/v1/plan", 200, false, "", baseBundle)
	want := []string{"create ignition etcd.yaml", "create profile disk", "create profile etcd", "create group default", "create group node1"}
	if !equalLines(actions(p), want) || p.Summary != (wire.Summary{Create: 5}) || p.Applied {
		t.Fatalf("first plan: %v %+v", actions(p), p.Summary)
	}
	// A plan writes nothing.
	var l wire.List
	s.must(t, 200, "GET", "/api/v1/groups", "").decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("plan wrote groups: %+v", l.Items)
	}
	done, _ := s.plan(t, "/api/v1/apply", 200, false, p.PlanID, baseBundle)
	if !done.Applied || done.Summary != p.Summary {
		t.Fatalf("apply: %+v", done)
	}
	again, _ := s.plan(t, "/api/v1/plan", 200, false, "", baseBundle)
	if again.HasChanges() || again.Summary.Unchanged != 5 {
		t.Fatalf("plan after apply: %v %+v", actions(again), again.Summary)
	}

	changed := withFiles(baseBundle, map[string]string{
		"groups/node1.yaml":   "id: node1\nprofile: etcd\nselector:\n  os: wiped\n  mac: 52:54:00:00:00:01\nmetadata:\n  pool: a\n",
		"profiles/disk.json":  "",
		"groups/default.yaml": "",
	})
	p, _ = s.plan(t, "/api/v1/plan", 200, true, "", changed)
	want = []string{"unchanged ignition etcd.yaml", "delete profile disk", "unchanged profile etcd", "delete profile manual", "delete group default", "update group node1"}
	if !equalLines(actions(p), want) {
		t.Fatalf("prune plan:\n%v", strings.Join(actions(p), "\n"))
	}
	var upd wire.Change
	for _, c := range p.Changes {
		if c.Action == wire.ActionUpdate {
			upd = c
		}
	}
	wantDiff := []wire.FieldChange{{Path: "metadata.pool", New: "a"}, {Path: "selector.os", Old: "installed", New: "wiped"}}
	if b1, b2 := mustJSON(t, upd.Diff), mustJSON(t, wantDiff); b1 != b2 || upd.Version != 1 {
		t.Fatalf("diff %s (version %d), want %s", b1, upd.Version, b2)
	}

	// Without prune, nothing is deleted: the group default still names
	// the profile disk, which the bundle no longer holds but is kept.
	noPrune, _ := s.plan(t, "/api/v1/plan", 200, false, "", withFiles(changed, map[string]string{"groups/default.yaml": "id: default\nprofile: disk\n"}))
	if noPrune.Summary != (wire.Summary{Update: 1, Unchanged: 3}) {
		t.Fatalf("plan without prune: %v", actions(noPrune))
	}

	// A write after the plan makes it stale: the apply is refused whole.
	s.must(t, 200, "PUT", "/api/v1/profiles/etcd", `{"id": "etcd", "boot": {"kernel": "/other"}, "ignition_id": "etcd.yaml"}`)
	_, r := s.plan(t, "/api/v1/apply", http.StatusPreconditionFailed, true, p.PlanID, changed)
	if r.errorCode() != CodePlanStale {
		t.Fatalf("stale apply: %s", r.body)
	}
	s.must(t, 200, "GET", "/api/v1/profiles/manual", "")
	// A changed bundle is stale too.
	p, _ = s.plan(t, "/api/v1/plan", 200, true, "", changed)
	s.plan(t, "/api/v1/apply", http.StatusPreconditionFailed, false, p.PlanID, changed)
	s.plan(t, "/api/v1/apply", http.StatusPreconditionFailed, true, p.PlanID, baseBundle)

	done, _ = s.plan(t, "/api/v1/apply", 200, true, p.PlanID, changed)
	if done.Summary != (wire.Summary{Update: 2, Delete: 3, Unchanged: 1}) {
		t.Fatalf("prune apply: %v", actions(done))
	}
	s.must(t, 404, "GET", "/api/v1/profiles/manual", "")
	r = s.must(t, 200, "GET", "/api/v1/groups/node1", "")
	if r.header.Get("ETag") != `"2"` || !strings.Contains(r.body, `"wiped"`) {
		t.Fatalf("node1 after apply: %s %s", r.header.Get("ETag"), r.body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// catalogState lists every stored object with its version.
func catalogState(t *testing.T, st *store.Store) string {
	t.Helper()
	var lines []string
	err := st.ViewCatalog(context.Background(), func(tx store.CatalogTx) error {
		for _, k := range catalogKinds {
			objs, err := tx.List(k)
			if err != nil {
				return err
			}
			for _, o := range objs {
				lines = append(lines, fmt.Sprintf("%s/%s@%d", k, o.ID, o.Version))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, " ")
}

func TestApplyRefusedAtomically(t *testing.T) {
	tests := []struct {
		name    string
		changes map[string]string
		prune   bool
		status  int
		code    string
		problem string
	}{
		{
			name:    "identical selectors",
			changes: map[string]string{"groups/node2.yaml": "id: node2\nprofile: disk\nselector:\n  mac: 52:54:00:00:00:01\n  os: installed\n"},
			status:  422, code: CodeInvalidCatalog, problem: `groups "node1" and "node2" have identical selectors`,
		},
		{
			name:    "two default groups",
			changes: map[string]string{"groups/other.yaml": "id: other\nprofile: disk\n"},
			status:  422, code: CodeInvalidCatalog, problem: `are both default groups`,
		},
		{
			name:    "missing profile",
			changes: map[string]string{"groups/new.yaml": "id: new\nprofile: nope\nselector:\n  rack: r9\n", "profiles/extra.yaml": "id: extra\n"},
			status:  422, code: CodeInvalidCatalog, problem: `group "new": profile "nope" does not exist`,
		},
		{
			name:    "pruned template still named",
			changes: map[string]string{"ignition/etcd.yaml": "", "profiles/extra.yaml": "id: extra\n"},
			prune:   true, status: 422, code: CodeInvalidCatalog, problem: `ignition_id "etcd.yaml" names no ignition template`,
		},
		{
			name:    "undecodable file",
			changes: map[string]string{"groups/bad.json": "{\"id\": \"bad\",\n \"profile\": 7}", "profiles/extra.yaml": "id: extra\n"},
			status:  400, code: CodeInvalidBundle, problem: "groups/bad.json:2:",
		},
		{
			name:    "object defined twice",
			changes: map[string]string{"profiles/copy.yaml": "id: etcd\n"},
			status:  400, code: CodeInvalidBundle, problem: `profile "etcd" is also defined in`,
		},
		{
			name:    "file outside the layout",
			changes: map[string]string{"assets/vmlinuz": "x"},
			status:  400, code: CodeInvalidBundle, problem: `"assets/vmlinuz": want profiles/NAME`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			s.plan(t, "/api/v1/apply", 200, false, "", baseBundle)
			before := catalogState(t, s.store)
			bundle := withFiles(baseBundle, tt.changes)
			for _, path := range []string{"/api/v1/plan", "/api/v1/apply"} {
				_, r := s.plan(t, path, tt.status, tt.prune, "", bundle)
				var e wire.Error
				r.decode(t, &e)
				if e.Error.Code != tt.code || !strings.Contains(strings.Join(e.Error.Problems, "\n"), tt.problem) {
					t.Fatalf("%s: %+v, want code %s and problem %q", path, e.Error, tt.code, tt.problem)
				}
			}
			if after := catalogState(t, s.store); after != before {
				t.Fatalf("a refused apply changed the catalog:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestPlanRequestErrors(t *testing.T) {
	s := newTestServer(t, Config{})
	tests := []struct {
		name, body, contentType string
		status                  int
		code                    string
	}{
		{"YAML body", "files: {}\n", "application/yaml", 415, CodeUnsupportedType},
		{"no files", `{"prune": true}`, "application/json", 400, CodeInvalidBody},
		{"unknown field", `{"files": {}, "force": true}`, "application/json", 400, CodeInvalidBody},
		{"not JSON", `files`, "application/json", 400, CodeInvalidBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.must(t, tt.status, "POST", "/api/v1/plan", tt.body, "Content-Type: "+tt.contentType)
			if r.errorCode() != tt.code {
				t.Fatalf("code %q, want %q: %s", r.errorCode(), tt.code, r.body)
			}
		})
	}
	// An empty bundle plans nothing, and with prune deletes everything.
	s.must(t, 201, "POST", "/api/v1/profiles", `{"id": "p"}`)
	p, _ := s.plan(t, "/api/v1/plan", 200, false, "", map[string]string{})
	if p.HasChanges() {
		t.Fatalf("empty bundle: %v", actions(p))
	}
	p, _ = s.plan(t, "/api/v1/plan", 200, true, "", map[string]string{})
	if !equalLines(actions(p), []string{"delete profile p"}) {
		t.Fatalf("empty bundle with prune: %v", actions(p))
	}
}

func TestPlanWarnsOfTies(t *testing.T) {
	s := newTestServer(t, Config{})
	files := map[string]string{
		"profiles/p.yaml": "id: p\nunknown_field: 1\n",
		"groups/a.yaml":   "id: a\nprofile: p\nselector:\n  rack: r1\n",
		"groups/b.yaml":   "id: b\nprofile: p\nselector:\n  os: installed\n",
	}
	p, _ := s.plan(t, "/api/v1/plan", 200, false, "", files)
	all := strings.Join(p.Warnings, "\n")
	if !strings.Contains(all, `profiles/p.yaml:2: unknown field "unknown_field" ignored`) || !strings.Contains(all, `"a"`) || !strings.Contains(all, `"b"`) {
		t.Fatalf("warnings: %q", p.Warnings)
	}
}
