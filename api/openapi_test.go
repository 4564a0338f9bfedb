package api

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"sort"
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
	spec, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	codes := ErrorCodes()
	if len(codes) < 21 {
		t.Fatalf("ErrorCodes lists %d codes", len(codes))
	}
	for _, code := range codes {
		if !strings.Contains(doc, "`"+code+"`") {
			t.Errorf("docs/api.md does not list the error code %s", code)
		}
		if !strings.Contains(string(spec), code) {
			t.Errorf("openapi.yaml does not list the error code %s", code)
		}
	}
}
