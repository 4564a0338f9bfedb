package matchbox

import (
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
)

func TestCheckTemplate(t *testing.T) {
	cases := []struct {
		name, tmplName, content string
		wantLine                int
		wantErr                 string // "" means accepted
	}{
		{"misspelt top-level key", "a.yaml", "variant: fcos\nversion: 1.5.0\npassword: x\n", 3, "unused key password"},
		{"good", "a.yaml", "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys: [\"{{.ssh_key}}\"]\nstorage:\n  files:\n    - path: /etc/hostname\n      mode: {{.mode}}\n      contents:\n        inline: {{.request.query.mac}}\n", 0, ""},
		{"unknown key", "a.yaml", "variant: fcos\nversion: 1.5.0\nstorage:\n  filez:\n    - path: /etc/x\n", 4, "unused key filez"},
		{"local file without files-dir", "a.yaml", "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        local: x.conf\n", 7, "files-dir"},
		{"container linux config", "old.yaml", "---\nstorage:\n  files:\n    - path: /etc/x\n      filesystem: root\n", 2, "Container Linux Config"},
		{"no variant", "a.yaml", "passwd: {}\n", 1, "variant"},
		{"range and with", "a.yaml", "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n{{- range .users}}\n    - name: {{.name}}\n{{- end}}\n{{with .extra}}    - name: {{.login}}{{end}}\n", 0, ""},
		{"range output with a typo", "a.yaml", "variant: fcos\nversion: 1.5.0\n{{range .files}}storage:\n  filez: []\n{{end}}", 4, "unused key filez"},
		{"raw ignition is not checked here", "a.ign", `{"ignition":{"version":"3.3.0"}}`, 0, ""},
		{"cannot render with samples: left alone", "a.yaml", "{{if eq .n 3}}x{{end}}variant: fcos\nversion: 1.5.0\nfilez: 1\n", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckTemplate(&Template{Kind: TemplateIgnition, Name: c.tmplName, Content: c.content})
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.wantErr)) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			te, ok := err.(*TemplateError)
			if !ok {
				t.Fatalf("err is %T", err)
			}
			if te.Line != c.wantLine {
				t.Errorf("line = %d, want %d (%v)", te.Line, c.wantLine, err)
			}
		})
	}
}

func TestGenericTemplatesAreNotButane(t *testing.T) {
	if err := CheckTemplate(&Template{Kind: TemplateGeneric, Name: "a.yaml", Content: "filez: 1\n"}); err != nil {
		t.Fatal(err)
	}
}

func TestSampleDataAndFields(t *testing.T) {
	tm := template.Must(template.New("t").Parse(`{{.a.b}} {{range .list}}{{.x}}{{end}} {{with .w}}{{.y}}{{end}} {{$.top}} {{index .request.query "mac"}}`))
	want := map[string]any{
		"a":       map[string]any{"b": samplePlaceholder},
		"list":    []any{map[string]any{"x": samplePlaceholder}},
		"w":       map[string]any{"y": samplePlaceholder},
		"top":     samplePlaceholder,
		"request": map[string]any{"query": samplePlaceholder},
	}
	if d := cmp.Diff(want, SampleData(tm)); d != "" {
		t.Errorf("SampleData (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a", "list", "request", "top", "w"}, TemplateFields(tm)); d != "" {
		t.Errorf("TemplateFields (-want +got):\n%s", d)
	}
}
