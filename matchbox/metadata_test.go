package matchbox

import (
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestTemplateRefs(t *testing.T) {
	tests := []struct {
		name, text string
		want       []FieldRef
	}{
		{"plain and nested", "{{.hostname}} {{.net.gateway}} {{.net.gateway}}",
			[]FieldRef{{Path: []string{"hostname"}}, {Path: []string{"net", "gateway"}}}},
		{"if: the condition is read, its body and else are guarded", "{{if .ssh}}{{.ssh.key}}{{else}}{{.fallback}}{{end}}",
			[]FieldRef{{Path: []string{"fallback"}, Guarded: true}, {Path: []string{"ssh"}}, {Path: []string{"ssh", "key"}, Guarded: true}}},
		{"with moves dot", "{{with .net}}{{.gw}} {{$.name}}{{end}}",
			[]FieldRef{{Path: []string{"name"}, Guarded: true}, {Path: []string{"net"}}, {Path: []string{"net", "gw"}, Guarded: true}}},
		{"range elements are not named", "{{range .disks}}{{.device}}{{end}}",
			[]FieldRef{{Path: []string{"disks"}}}},
		{"an unguarded read wins over a guarded one", "{{if .a}}{{.b}}{{end}}{{.b}}",
			[]FieldRef{{Path: []string{"a"}}, {Path: []string{"b"}}}},
		{"function arguments and parenthesised pipelines", `{{printf "%s-%s" .rack (print .row)}} {{index . "opt"}}`,
			[]FieldRef{{Path: []string{"rack"}}, {Path: []string{"row"}}}},
		{"$ in a range names the root", "{{range .nodes}}{{$.domain}}{{end}}",
			[]FieldRef{{Path: []string{"domain"}, Guarded: true}, {Path: []string{"nodes"}}}},
		{"no actions", "console=ttyS0", []FieldRef{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := template.Must(template.New("t").Parse(tc.text))
			if diff := cmp.Diff(tc.want, TemplateRefs(tmpl), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("TemplateRefs(%q) (-want +got):\n%s", tc.text, diff)
			}
		})
	}
}

func TestMissingMetadata(t *testing.T) {
	butane := "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: {{.hostname}}\n"
	prof := func(args ...string) Profile {
		return Profile{ID: "p", Boot: Boot{Kernel: "/k", Args: args}, IgnitionID: "node.yaml", GenericID: "gen.txt"}
	}
	tmpls := []Template{
		{Kind: TemplateIgnition, Name: "node.yaml", Content: butane},
		{Kind: TemplateGeneric, Name: "gen.txt", Content: "ssh={{.ssh_key}} q={{.request.query.os}} url={{.provisioned_url}} gw={{.net.gateway}}{{range .disks}}{{.name}}{{end}}{{if .debug}}{{.debug_level}}{{end}}"},
		{Kind: TemplateIgnition, Name: "raw.ign", Content: `{"ignition":{"version":"3.4.0"}}`},
	}
	full := map[string]any{"hostname": "h", "ssh_key": "k", "disks": []any{}, "net": map[string]any{"gateway": "10.0.0.1"}, "debug": true, "debug_level": 2}
	tests := []struct {
		name string
		c    Catalog
		want []MissingKey
	}{
		{
			name: "every key provided: metadata, nested metadata, selector, machine variables",
			c: Catalog{Profiles: []Profile{prof("host={{.hostname}}", "mac={{.mac}}", "id={{.machine_id}} {{.agent_token}} {{.matchbox_url}}")}, Templates: tmpls,
				Groups: []Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}, Metadata: full}}},
		},
		{
			name: "a group without metadata lacks each key, once per template; a guarded key is optional",
			c: Catalog{Profiles: []Profile{prof("host={{.hostname}}", "plain")}, Templates: tmpls,
				Groups: []Group{{ID: "bare", Profile: "p"}, {ID: "full", Profile: "p", Selector: map[string]string{"k": "v"}, Metadata: full}}},
			want: []MissingKey{
				{Group: "bare", Profile: "p", Template: "profile p boot.args[0]", Key: "hostname"},
				{Group: "bare", Profile: "p", Template: "ignition template node.yaml", Key: "hostname"},
				{Group: "bare", Profile: "p", Template: "generic template gen.txt", Key: "debug"},
				{Group: "bare", Profile: "p", Template: "generic template gen.txt", Key: "debug_level", Optional: true},
				{Group: "bare", Profile: "p", Template: "generic template gen.txt", Key: "disks"},
				{Group: "bare", Profile: "p", Template: "generic template gen.txt", Key: "net"},
				{Group: "bare", Profile: "p", Template: "generic template gen.txt", Key: "ssh_key"},
			},
		},
		{
			name: "nested: the first level missing is named",
			c: Catalog{Profiles: []Profile{{ID: "p", Boot: Boot{Kernel: "/k", Args: []string{"gw={{.net.gateway}} dns={{.net.dns.primary}}"}}}},
				Groups: []Group{{ID: "g", Profile: "p", Metadata: map[string]any{"net": map[string]any{"gateway": "x"}}}}},
			want: []MissingKey{{Group: "g", Profile: "p", Template: "profile p boot.args[0]", Key: "net.dns"}},
		},
		{
			name: "selector keys count by their lower-cased names; mac only from a mac selector",
			c: Catalog{Profiles: []Profile{{ID: "p", Boot: Boot{Kernel: "/k", Args: []string{"{{.rack}} {{.mac}}"}}}},
				Groups: []Group{{ID: "g", Profile: "p", Selector: map[string]string{"Rack": "r1"}}}},
			want: []MissingKey{{Group: "g", Profile: "p", Template: "profile p boot.args[0]", Key: "mac"}},
		},
		{
			name: "raw Ignition, missing templates and missing profiles are not read",
			c: Catalog{Profiles: []Profile{{ID: "p", Boot: Boot{Kernel: "/k"}, IgnitionID: "raw.ign", GenericID: "absent"}}, Templates: tmpls,
				Groups: []Group{{ID: "g", Profile: "p"}, {ID: "dangling", Profile: "ghost", Selector: map[string]string{"k": "v"}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Build(tc.c, nil)
			if err != nil {
				t.Fatal(err)
			}
			var groups []*Group
			for _, g := range tc.c.Groups {
				sg, ok := snap.Group(g.ID)
				if !ok {
					t.Fatalf("group %q not in the snapshot", g.ID)
				}
				groups = append(groups, sg)
			}
			if diff := cmp.Diff(tc.want, snap.MissingMetadata(groups), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	got := MissingKey{Group: "g", Profile: "p", Template: "ignition template node.yaml", Key: "hostname"}.String()
	if want := `group "g" (profile "p"): ignition template node.yaml reads {{.hostname}}, which the group's metadata and selector lack and matchbox does not set`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestMissingMetadataAgreesWithRendering: a key reported missing makes
// rendering fail, and a group that gets no report renders.
func TestMissingMetadataAgreesWithRendering(t *testing.T) {
	c := Catalog{
		Profiles:  []Profile{{ID: "p", Boot: Boot{Kernel: "/k"}, GenericID: "g.txt"}},
		Templates: []Template{{Kind: TemplateGeneric, Name: "g.txt", Content: "{{.a.b}} {{with .c}}{{.d}}{{end}} {{.request.raw_query}}"}},
		Groups: []Group{
			{ID: "ok", Profile: "p", Selector: map[string]string{"k": "1"}, Metadata: map[string]any{"a": map[string]any{"b": 1}, "c": map[string]any{"d": 2}}},
			{ID: "lacks-b", Profile: "p", Selector: map[string]string{"k": "2"}, Metadata: map[string]any{"a": map[string]any{}, "c": map[string]any{"d": 2}}},
			{ID: "lacks-d", Profile: "p", Selector: map[string]string{"k": "3"}, Metadata: map[string]any{"a": map[string]any{"b": 1}, "c": map[string]any{"e": 2}}},
		},
	}
	snap, err := Build(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range snap.Groups() {
		missing := snap.MissingMetadata([]*Group{g})
		_, err := snap.RenderGeneric("g.txt", Variables(g, Request{}))
		if (len(missing) > 0) != (err != nil) {
			t.Errorf("group %s: reported %v, render error %v", g.ID, missing, err)
		}
	}
}
