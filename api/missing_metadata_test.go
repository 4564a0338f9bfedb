package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMissingMetadataWarnings: a plan names each group whose templates
// read a variable the group lacks, and a single-object write answers the
// warnings about the object written (in Warning headers), while still
// storing it.
func TestMissingMetadataWarnings(t *testing.T) {
	s := newTestServer(t, Config{})
	bundle := map[string]string{
		"profiles/node.yaml": "id: node\nboot:\n  kernel: /k\n  args: [\"hostname={{.hostname}}\"]\ngeneric_id: motd\n",
		"generic/motd":       "welcome to {{.hostname}} in {{.rack}}{{if .banner}} {{.banner_text}}{{end}}\n",
		"groups/a.yaml":      "id: a\nprofile: node\nselector:\n  rack: r1\nmetadata:\n  hostname: a.example.com\n  banner: false\n",
		"groups/b.yaml":      "id: b\nprofile: node\nselector:\n  mac: 52:54:00:00:00:02\n",
	}
	p, _ := s.plan(t, "/api/v1/plan", 200, false, "", bundle)
	var got []string
	for _, w := range p.Warnings {
		if strings.Contains(w, "matchbox does not set") {
			got = append(got, w)
		}
	}
	want := []string{
		`group "a" (profile "node"): generic template motd may read (inside if/with/range) {{.banner_text}}, which the group's metadata and selector lack and matchbox does not set`,
		`group "b" (profile "node"): profile node boot.args[0] reads {{.hostname}}, which the group's metadata and selector lack and matchbox does not set`,
		`group "b" (profile "node"): generic template motd reads {{.banner}}, which the group's metadata and selector lack and matchbox does not set`,
		`group "b" (profile "node"): generic template motd may read (inside if/with/range) {{.banner_text}}, which the group's metadata and selector lack and matchbox does not set`,
		`group "b" (profile "node"): generic template motd reads {{.hostname}}, which the group's metadata and selector lack and matchbox does not set`,
		`group "b" (profile "node"): generic template motd reads {{.rack}}, which the group's metadata and selector lack and matchbox does not set`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("plan warnings (-want +got):\n%s", diff)
	}

	// Single-object writes: the write is stored and answers the warnings
	// about the object written.
	s.must(t, http.StatusCreated, "POST", "/api/v1/profiles", `{"id":"node","boot":{"kernel":"/k","args":["hostname={{.hostname}}"]}}`)
	r := s.must(t, http.StatusCreated, "POST", "/api/v1/groups", `{"id":"b","profile":"node","selector":{"mac":"52:54:00:00:00:02"}}`)
	if w := r.header.Values("Warning"); len(w) != 1 || !strings.Contains(w[0], `group \"b\" (profile \"node\"): profile node boot.args[0] reads {{.hostname}}`) {
		t.Errorf("group write warnings %q", w)
	}
	s.must(t, http.StatusOK, "GET", "/api/v1/groups/b", "")
	r = s.must(t, http.StatusOK, "PUT", "/api/v1/groups/b", `{"id":"b","profile":"node","selector":{"mac":"52:54:00:00:00:02"},"metadata":{"hostname":"b"}}`)
	if w := r.header.Values("Warning"); len(w) != 0 {
		t.Errorf("a group that provides hostname is warned: %q", w)
	}
	r = s.must(t, http.StatusOK, "PUT", "/api/v1/profiles/node", `{"id":"node","boot":{"kernel":"/k","args":["{{.hostname}} {{.disk.root}}"]}}`)
	if w := r.header.Values("Warning"); len(w) != 1 || !strings.Contains(w[0], `reads {{.disk}}`) {
		t.Errorf("profile write warnings %q", w)
	}
	r = s.must(t, http.StatusOK, "PUT", "/api/v1/profiles/node", `{"id":"node","boot":{"kernel":"/k"},"generic_id":"motd"}`)
	if w := r.header.Values("Warning"); len(w) != 1 || !strings.Contains(w[0], `generic_id \"motd\" names no generic template`) {
		t.Errorf("profile naming a missing template warns %q", w)
	}
	r = s.must(t, http.StatusCreated, "POST", "/api/v1/templates/generic", `{"name":"motd","content":"{{.hostname}} {{.rack}}"}`)
	if w := r.header.Values("Warning"); len(w) != 1 || !strings.Contains(w[0], `generic template motd reads {{.rack}}`) {
		t.Errorf("template write warnings %q", w)
	}
}
