package api

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/store"
)

// TestPlanPruneReasons: a prune's deletes say why, by the object's origin:
// a shipped default (and the file it came from), an object imported from a
// data-directory file, one written through the API.
func TestPlanPruneReasons(t *testing.T) {
	s := newTestServer(t, Config{})
	ctx := context.Background()
	objs := []*store.Object{
		{Kind: matchbox.KindProfile, Source: "profiles/discovery.yaml", Profile: &matchbox.Profile{ID: "discovery", Boot: matchbox.Boot{Kernel: "/k"}, Shipped: true}},
		{Kind: matchbox.KindGroup, Source: "groups/default.yaml", Group: &matchbox.Group{ID: "default", Profile: "discovery", Shipped: true}},
		{Kind: matchbox.KindProfile, Source: "profiles/web.json", Profile: &matchbox.Profile{ID: "web", Boot: matchbox.Boot{Kernel: "/k"}}},
	}
	if _, _, err := s.store.Import(ctx, "test", objs); err != nil {
		t.Fatal(err)
	}
	s.must(t, 201, "POST", "/api/v1/profiles", `{"id":"manual","boot":{"kernel":"/k"}}`)
	s.must(t, 201, "POST", "/api/v1/groups", `{"id":"g","profile":"manual","selector":{"os":"x"},"shipped":true}`)

	p, _ := s.plan(t, "/api/v1/plan", 200, true, "", map[string]string{"profiles/keep.yaml": "id: keep\nboot:\n  kernel: /k\n"})
	got := map[string]string{}
	for _, c := range p.Changes {
		if c.Action == "delete" {
			got[c.Kind+" "+c.ID] = c.Reason
		} else if c.Reason != "" {
			t.Errorf("%s %s %s has a reason %q", c.Action, c.Kind, c.ID, c.Reason)
		}
	}
	want := map[string]string{
		"profile discovery": "shipped default, imported from data-dir file profiles/discovery.yaml; not in the bundle",
		"group default":     "shipped default, imported from data-dir file groups/default.yaml; not in the bundle",
		"profile web":       "imported from data-dir file profiles/web.json; not in the bundle",
		"profile manual":    "written through the API; not in the bundle",
		"group g":           "shipped default; not in the bundle",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delete reasons (-want +got):\n%s", diff)
	}
}

// TestShippedDefaultsMarked: the repository's own data directory, which
// make run serves, marks its defaults shipped.
func TestShippedDefaultsMarked(t *testing.T) {
	data, err := os.ReadFile("../profiles/discovery.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := datadir.DecodeProfile(data, "profiles/discovery.yaml", "")
	if err != nil || !p.Shipped {
		t.Errorf("profiles/discovery.yaml: shipped %v, %v", p != nil && p.Shipped, err)
	}
	if data, err = os.ReadFile("../groups/default.yaml"); err != nil {
		t.Fatal(err)
	}
	g, _, err := datadir.DecodeGroup(data, "groups/default.yaml", "")
	if err != nil || !g.Shipped {
		t.Errorf("groups/default.yaml: shipped %v, %v", g != nil && g.Shipped, err)
	}
}
