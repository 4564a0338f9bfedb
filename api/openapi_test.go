package api

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

// openAPIPaths returns the document's operations: path -> methods.
func openAPIPaths(t *testing.T) map[string][]string {
	t.Helper()
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q is not version 3", doc.OpenAPI)
	}
	out := map[string][]string{}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			out[p] = append(out[p], strings.ToUpper(m))
		}
		sort.Strings(out[p])
	}
	return out
}

var pathVar = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

// TestOpenAPICoversRoutes walks the router: every route and method is
// documented, and every documented operation is routed.
func TestOpenAPICoversRoutes(t *testing.T) {
	s := newTestServer(t, Config{})
	documented := openAPIPaths(t)
	routed := map[string][]string{}
	err := s.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return nil // a route without a path (prefix-only)
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // the catch-all of unknown paths
		}
		p := pathVar.ReplaceAllString(strings.TrimPrefix(tmpl, Prefix), "{$1}")
		routed[p] = append(routed[p], methods...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(routed) < 10 {
		t.Fatalf("walked only %d routes", len(routed))
	}
	for p, methods := range routed {
		for _, m := range methods {
			found := false
			for _, d := range documented[p] {
				found = found || d == m
			}
			if !found {
				t.Errorf("route %s %s is not in openapi.yaml", m, p)
			}
		}
	}
	for p, methods := range documented {
		for _, m := range methods {
			found := false
			for _, r := range routed[p] {
				found = found || r == m
			}
			if !found {
				t.Errorf("openapi.yaml documents %s %s, which is not routed", m, p)
			}
		}
	}
	// The document is served.
	r := s.must(t, http.StatusOK, "GET", "/api/v1/openapi.json", "")
	var doc map[string]any
	r.decode(t, &doc)
	if doc["paths"] == nil {
		t.Fatal("served document has no paths")
	}
}

// TestOpenAPIRefsResolve checks that every $ref names a component.
func TestOpenAPIRefsResolve(t *testing.T) {
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(b, &doc)
	refs := regexp.MustCompile(`"\$ref": "#/components/([^/]+)/([^"]+)"`).FindAllStringSubmatch(string(b), -1)
	if len(refs) == 0 {
		t.Fatal("no $ref found")
	}
	comps := doc["components"].(map[string]any)
	for _, m := range refs {
		section, _ := comps[m[1]].(map[string]any)
		if _, ok := section[m[2]]; !ok {
			t.Errorf("$ref #/components/%s/%s does not resolve", m[1], m[2])
		}
	}
}

// TestDocsCoverOpenAPI checks that docs/api.md describes every path and
// error code of the API.
func TestDocsCoverOpenAPI(t *testing.T) {
	md, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(md)
	for p, methods := range openAPIPaths(t) {
		full := Prefix + p
		if !strings.Contains(doc, full) {
			t.Errorf("docs/api.md does not mention %s", full)
			continue
		}
		for _, m := range methods {
			if !strings.Contains(doc, m+" "+full) {
				t.Errorf("docs/api.md does not mention %s %s", m, full)
			}
		}
	}
}

// apiErrorCodes reads the package's source as a newcomer would: the Code
// constants it declares (name → value), the names used outside their
// declaration, and the error codes written as literals instead of
// constants (errorf calls, Code fields), by position.
func apiErrorCodes(t *testing.T) (declared map[string]string, used map[string]bool, literals []string) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	declared, used = map[string]string{}, map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		decl := map[*ast.Ident]bool{}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Errorf("%s: %s is not a string literal", fset.Position(id.Pos()), id.Name)
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					declared[id.Name] = v
					decl[id] = true
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Ident:
				if strings.HasPrefix(n.Name, "Code") && !decl[n] {
					used[n.Name] = true
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && fn.Name == "errorf" && len(n.Args) > 1 {
					if _, ok := n.Args[1].(*ast.BasicLit); ok {
						literals = append(literals, fset.Position(n.Pos()).String())
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Code" {
					if _, ok := n.Value.(*ast.BasicLit); ok {
						literals = append(literals, fset.Position(n.Pos()).String())
					}
				}
			}
			return true
		})
	}
	return declared, used, literals
}

// TestErrorCodesDocumented checks from the outside that every error code
// the code can answer is a declared constant, and that openapi.yaml's enum
// and docs/api.md list exactly those: a code added to the source and not
// to the documents, or left in the documents after its removal, fails.
func TestErrorCodesDocumented(t *testing.T) {
	declared, used, literals := apiErrorCodes(t)
	if len(declared) == 0 {
		t.Fatal("no Code constant found in the package's source")
	}
	for _, pos := range literals {
		t.Errorf("%s: an error code written as a literal, not a Code constant", pos)
	}
	for name := range declared {
		if !used[name] {
			t.Errorf("%s is declared but no error answers with it", name)
		}
	}
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	enum := doc.Components.Schemas["ErrorDetail"].Properties["code"].Enum
	md, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]bool{}
	for name, v := range declared {
		values[v] = true
		if !slices.Contains(enum, v) {
			t.Errorf("openapi.yaml: ErrorDetail.code's enum lacks %s (%s)", v, name)
		}
		if !strings.Contains(string(md), "`"+v+"`") {
			t.Errorf("docs/api.md does not list the error code %s (%s)", v, name)
		}
	}
	for _, v := range enum {
		if !values[v] {
			t.Errorf("openapi.yaml: ErrorDetail.code's enum lists %s, which no Code constant declares", v)
		}
	}
}
