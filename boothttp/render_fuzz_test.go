package boothttp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"matchbox/matchbox"
)

// FuzzRenderHostileMetadata renders every boot endpoint (iPXE, GRUB,
// Butane and raw Ignition, generic, metadata) for a group whose metadata
// holds a fuzzed key and value, nested and top-level, and for a request
// whose labels carry a fuzzed query: no answer panics or is a 5xx other
// than a rendering error (500 with a reason), and a served Ignition
// config is valid JSON.
func FuzzRenderHostileMetadata(f *testing.F) {
	f.Add("hostname", "node1.example.com", "os=installed")
	f.Add("hostname", "\"}\n{{.x}}", "mac=52:54:00:00:00:01&hostname=%00")
	f.Add("", "", "")
	f.Add("a_b", "\x00\xff", "request=1&mac=zz")
	f.Add("ssh_key", "ssh-ed25519 AAAA\r\nboot\n#!ipxe", "x="+strings.Repeat("%7B%7B", 10))
	f.Add("request", "shadow", "os=%22%0Avariant")
	f.Fuzz(func(t *testing.T, key, value, query string) {
		cat := matchbox.Catalog{
			Profiles: []matchbox.Profile{
				{ID: "p", Boot: matchbox.Boot{Kernel: "/k", Initrd: []string{"/i"}, Args: []string{"host={{.hostname}}", "v={{.k}}", "q={{.request.raw_query}}"}},
					IgnitionID: "c.yaml", GenericID: "g.txt"},
				{ID: "raw", Boot: matchbox.Boot{Kernel: "/k"}, IgnitionID: "raw.ign", GenericID: "all.txt"},
			},
			Groups: []matchbox.Group{
				{ID: "g", Profile: "p", Selector: map[string]string{"os": "installed"}, Metadata: map[string]any{
					"hostname": "h", "k": value, key: value, "nested": map[string]any{key: value, "list": []any{value, 1.0}},
				}},
				{ID: "raw", Profile: "raw", Selector: map[string]string{"os": "raw"}, Metadata: map[string]any{key: value}},
			},
			Templates: []matchbox.Template{
				{Kind: matchbox.TemplateIgnition, Name: "c.yaml", Content: "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: \"{{.hostname}} {{.k}} {{.request.query.os}}\"\n    - path: /etc/q\n      contents:\n        inline: {{printf \"%q\" .request.raw_query}}\n"},
				{Kind: matchbox.TemplateIgnition, Name: "raw.ign", Content: `{"ignition":{"version":"3.3.0"}}`},
				{Kind: matchbox.TemplateGeneric, Name: "g.txt", Content: "host={{.hostname}} k={{.k}} nested={{.nested}} q={{.request.query}}\n"},
				{Kind: matchbox.TemplateGeneric, Name: "all.txt", Content: "{{range $k, $v := .}}{{$k}}={{$v}}\n{{end}}"},
			},
		}
		snap, err := matchbox.Build(cat, nil)
		if err != nil {
			return // a key the catalog refuses (checked when written)
		}
		s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }})
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		for _, os := range []string{"installed", "raw"} {
			for _, ep := range []string{"/ipxe", "/grub", "/ignition", "/generic", "/metadata", "/boot.ipxe"} {
				target := ep + "?" + query + "&os=" + os
				if _, err := url.ParseQuery(query); err != nil {
					target = ep + "?os=" + os + "&x=" + url.QueryEscape(query)
				}
				req := httptest.NewRequest(http.MethodGet, "http://mb"+ep, nil)
				req.URL.RawQuery = strings.TrimPrefix(target, ep+"?")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				switch {
				case w.Code == http.StatusOK:
				case w.Code == http.StatusNotFound || w.Code == http.StatusBadRequest:
				case w.Code == http.StatusInternalServerError && strings.TrimSpace(w.Body.String()) != "":
				default:
					t.Fatalf("GET %s: %d %q", target, w.Code, w.Body)
				}
				if ep == "/ignition" && w.Code == http.StatusOK && !json.Valid(w.Body.Bytes()) {
					t.Fatalf("GET %s served invalid JSON: %q", target, w.Body)
				}
			}
		}
	})
}
