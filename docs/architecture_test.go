// Package docs_test keeps docs/architecture.md true: every package of the
// module is listed there, and the layering rules it states hold.
package docs_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "matchbox"

// goPackage is one package of the module with its non-test imports.
type goPackage struct {
	path    string // relative to the module root, e.g. "dhcp"
	imports []string
}

// listPackages runs `go list` over the module.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	var pkgs []goPackage
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(f[0], module), "/")
		pkgs = append(pkgs, goPackage{path: rel, imports: f[1:]})
	}
	return pkgs
}

// TestEveryPackageDocumented checks that docs/architecture.md names every
// package (as `path/`), or a parent folder it is listed under.
func TestEveryPackageDocumented(t *testing.T) {
	doc, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range listPackages(t) {
		if p.path == "" || p.path == "docs" {
			continue
		}
		documented := false
		for dir := p.path; dir != "." && dir != ""; dir = parentDir(dir) {
			if bytes.Contains(doc, []byte("`"+dir+"/`")) {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s is not listed in docs/architecture.md (as `%s/`)", p.path, p.path)
		}
	}
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// TestLayering checks the import rules docs/architecture.md states.
func TestLayering(t *testing.T) {
	// Packages below these prefixes serve protocols or hold the model: they
	// must not reach up into persistence, the API, the lifecycle or the
	// command.
	lower := []string{"boothttp", "dhcp", "tftp", "signing", "matchbox", "hardware", "bmc", "agent", "v011", "version"}
	upper := []string{"store", "api", "lifecycle", "cmd"}
	sqlImports := []string{"database/sql", "modernc.org/sqlite"}
	for _, p := range listPackages(t) {
		for _, imp := range p.imports {
			if !strings.HasPrefix(p.path, "store") {
				for _, s := range sqlImports {
					if imp == s || strings.HasPrefix(imp, s+"/") {
						t.Errorf("%s imports %s: only store/ speaks SQL", p.path, imp)
					}
				}
			}
			if !underAny(p.path, lower) || !strings.HasPrefix(imp, module+"/") {
				continue
			}
			rel := strings.TrimPrefix(imp, module+"/")
			if underAny(rel, upper) {
				t.Errorf("%s imports %s: protocol and model packages do not depend on %v", p.path, rel, upper)
			}
		}
	}
}

// underAny reports whether path is one of prefixes or below one of them.
func underAny(path string, prefixes []string) bool {
	for _, pre := range prefixes {
		if path == pre || strings.HasPrefix(path, pre+"/") {
			return true
		}
	}
	return false
}
