package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCLIPlanNamesMissingMetadata: plan of the real binary names, one
// line per group and variable, the template variables a group lacks
// (group, profile, template, variable); apply stores the bundle anyway, and
// the group's machines then get the render error plan foretold while the
// group that has the variable boots.
func TestCLIPlanNamesMissingMetadata(t *testing.T) {
	s := startServer(t, "--data-dir", t.TempDir(), "--assets-dir", "-")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"profiles/node.yaml": "id: node\nboot:\n  kernel: /assets/vmlinuz\n  args: [\"hostname={{.hostname}}\", \"{{if .debug}}loglevel={{.loglevel}}{{end}}\"]\ngeneric_id: motd\n",
		"generic/motd":       "rack {{.rack}}\n",
		"groups/named.yaml":  "id: named\nprofile: node\nselector:\n  mac: 52:54:00:00:00:01\nmetadata:\n  hostname: n1\n  rack: r1\n  debug: false\n",
		"groups/bare.yaml":   "id: bare\nprofile: node\nselector:\n  mac: 52:54:00:00:00:02\n",
	})
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}
	code, out, errOut := runCLI(t, env, "plan", "-f", dir)
	if code != 2 {
		t.Fatalf("plan: exit %d, want 2\n%s\n%s", code, out, errOut)
	}
	var got []string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "matchbox does not set") {
			got = append(got, l)
		}
	}
	want := []string{
		`Warning: group "bare" (profile "node"): profile node boot.args[0] reads {{.hostname}}, which the group's metadata and selector lack and matchbox does not set`,
		`Warning: group "bare" (profile "node"): profile node boot.args[1] reads {{.debug}}, which the group's metadata and selector lack and matchbox does not set`,
		`Warning: group "bare" (profile "node"): profile node boot.args[1] may read (inside if/with/range) {{.loglevel}}, which the group's metadata and selector lack and matchbox does not set`,
		`Warning: group "bare" (profile "node"): generic template motd reads {{.rack}}, which the group's metadata and selector lack and matchbox does not set`,
		`Warning: group "named" (profile "node"): profile node boot.args[1] may read (inside if/with/range) {{.loglevel}}, which the group's metadata and selector lack and matchbox does not set`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, out, errOut := runCLI(t, env, "apply", "-f", dir, "--auto-approve"); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, tc := range []struct {
		mac    string
		status int
		body   string
	}{
		{"52:54:00:00:00:01", http.StatusOK, "hostname=n1"},
		{"52:54:00:00:00:02", http.StatusInternalServerError, `map has no entry for key "hostname"`},
	} {
		resp, err := http.Get(s.URL + "/ipxe?mac=" + tc.mac)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("/ipxe?mac=%s: %d %q, want %d with %q", tc.mac, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}
