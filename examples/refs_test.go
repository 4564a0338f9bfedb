package examples

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"matchbox/matchbox"
)

// TestVarRefsAgreeWithTemplateRefs: on every template of the examples and
// of the shipped data directory (the repository root), the top-level
// variables /ipxe and /ignition compute (VarRefs) cover every path plan
// checks (TemplateRefs), and data narrowed to them renders exactly as the
// whole sample data does.
func TestVarRefsAgreeWithTemplateRefs(t *testing.T) {
	dirs := []string{".."}
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	checked := 0
	for _, dir := range dirs {
		_, cat, snap := readDir(t, dir)
		for _, tm := range cat.Templates {
			if !strings.Contains(tm.Content, "{{") {
				continue
			}
			checkRefs(t, filepath.Join(dir, string(tm.Kind), tm.Name), tm.Content, snap.TemplateRefs(tm.Kind, tm.Name))
			checked++
		}
		for _, p := range cat.Profiles {
			for i, arg := range p.Boot.Args {
				if strings.Contains(arg, "{{") {
					checkRefs(t, fmt.Sprintf("%s profile %s boot.args[%d]", dir, p.ID, i), arg, snap.ArgsRefs(p.ID))
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no template found")
	}
}

func checkRefs(t *testing.T, where, text string, refs *matchbox.VarRefs) {
	t.Helper()
	parsed, err := template.New(where).Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, ref := range matchbox.TemplateRefs(parsed) {
		if !refs.Uses(ref.Path[0]) {
			t.Errorf("%s: TemplateRefs reads %s, VarRefs does not use %q", where, strings.Join(ref.Path, "."), ref.Path[0])
		}
	}
	full := matchbox.SampleData(parsed)
	full["zz_not_read"] = "decoy"
	var want bytes.Buffer
	if err := parsed.Execute(&want, full); err != nil {
		t.Logf("%s: does not render with sample data (%v); render check skipped", where, err)
		return
	}
	narrowed := map[string]any{}
	for k, v := range full {
		if refs.Uses(k) {
			narrowed[k] = v
		}
	}
	var got bytes.Buffer
	if err := parsed.Execute(&got, narrowed); err != nil {
		t.Errorf("%s: the variables VarRefs uses do not render: %v", where, err)
		return
	}
	if got.String() != want.String() {
		t.Errorf("%s: rendered with the variables VarRefs uses:\n%s\nwith all:\n%s", where, got.String(), want.String())
	}
}
