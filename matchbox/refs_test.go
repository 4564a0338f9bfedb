package matchbox

import (
	"testing"
	"text/template"
)

func TestVarRefs(t *testing.T) {
	tests := []struct {
		name, text string
		uses       []string // names it must use
		not        []string // names it must not use ("" means: uses all)
	}{
		{"fields, nested and through $", "{{.hostname}} {{.net.gw}} {{range .x}}{{$.domain}}{{end}}", []string{"hostname", "net", "x", "domain"}, []string{"gw", "other"}},
		{"a range element's fields and dot are the element's", "{{range .ssh_keys}}{{.}} {{.comment}}{{end}}", []string{"ssh_keys"}, []string{"comment", "other"}},
		{"with moves dot", "{{with .net}}{{.gw}} {{.}}{{end}}", []string{"net"}, []string{"gw", "other"}},
		{"a bare dot hands everything on", `{{index . "k"}}`, []string{"anything"}, nil},
		{"a bare $ hands everything on", "{{range .x}}{{$}}{{end}}", []string{"anything"}, nil},
		{"template with dot hands everything on", `{{define "d"}}{{.a}}{{end}}{{template "d" .}}`, []string{"anything"}, nil},
		{"template with a field", `{{define "d"}}{{.a}}{{end}}{{template "d" .net}}`, []string{"net", "a"}, []string{"other"}},
		{"chains and parenthesised pipelines", "{{(.a).b}} {{print (.c)}}", []string{"a", "c"}, []string{"b", "other"}},
		{"declared variables", "{{$v := .a}}{{$v.b}}", []string{"a"}, []string{"b", "other"}},
		{"no actions", "console=ttyS0", nil, []string{"console"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := refsOf(template.Must(template.New("t").Parse(tc.text)))
			for _, n := range tc.uses {
				if !r.Uses(n) {
					t.Errorf("Uses(%q) = false, want true", n)
				}
			}
			for _, n := range tc.not {
				if r.Uses(n) {
					t.Errorf("Uses(%q) = true, want false", n)
				}
			}
		})
	}
	var nilRefs *VarRefs
	if !nilRefs.Uses("x") {
		t.Error("a nil *VarRefs must use every variable")
	}
}
