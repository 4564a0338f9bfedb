package matchbox

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox/ignition"
)

// TestRenderIgnitionCachedMatchesTranslation renders every Butane template
// of the examples for several machines, twice each, and checks that each
// answer (the second from the cache) is the Ignition JSON a translation
// of the rendered text gives.
func TestRenderIgnitionCachedMatchesTranslation(t *testing.T) {
	files, err := filepath.Glob("../examples/*/ignition/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Butane templates among the examples (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(filepath.Dir(f)))+"/"+filepath.Base(f), func(t *testing.T) {
			content, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(f)
			snap, err := Build(Catalog{Templates: []Template{{Kind: TemplateIgnition, Name: name, Content: string(content)}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				data := exampleVars(i)
				var rendered bytes.Buffer
				if err := template.Must(template.New(name).Option("missingkey=error").Parse(string(content))).Execute(&rendered, data); err != nil {
					t.Fatal(err)
				}
				want, err := ignition.TranslateButane(rendered.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				first, err := snap.RenderIgnition(name, data)
				if err != nil {
					t.Fatal(err)
				}
				second, err := snap.RenderIgnition(name, data)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(string(want), string(first)); diff != "" {
					t.Errorf("machine %d: first answer differs from translation (-want +got):\n%s", i, diff)
				}
				if diff := cmp.Diff(string(want), string(second)); diff != "" {
					t.Errorf("machine %d: cached answer differs from translation (-want +got):\n%s", i, diff)
				}
				if &first[0] != &second[0] {
					t.Errorf("machine %d: the second answer was translated again, not taken from the cache", i)
				}
			}
			if n := snap.templates[TemplateIgnition][name].translated.len(); n != 3 {
				t.Errorf("cache holds %d translations for 3 machines, want 3", n)
			}
		})
	}
}

// exampleVars is the i-th machine's template variables for the examples'
// templates.
func exampleVars(i int) map[string]any {
	mac := fmt.Sprintf("52:54:00:00:00:%02x", i)
	return map[string]any{
		"hostname":             fmt.Sprintf("node%d", i),
		"domain_name":          fmt.Sprintf("node%d.example.com", i),
		"etcd_name":            fmt.Sprintf("etcd%d", i),
		"etcd_initial_cluster": "etcd0=http://node0:2380,etcd1=http://node1:2380",
		"mac":                  mac,
		"os":                   "installed",
		"role":                 []string{"storage", "compute", "etcd"}[i],
		"provisioned_url":      fmt.Sprintf("http://matchbox:8080/provisioned?machine=m%d&token=t", i),
		"ssh_authorized_keys":  []any{fmt.Sprintf("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%040d k%d", i, i)},
		"request":              map[string]any{"query": map[string]string{"mac": mac}, "raw_query": "mac=" + mac},
	}
}

// TestTranslateCacheBound fills a cache past its bound and checks that it
// keeps within it, forgetting the oldest entries first.
func TestTranslateCacheBound(t *testing.T) {
	c := newTranslateCache(100)
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte{byte(i)}) }
	for i := 0; i < 10; i++ {
		c.put(key(i), bytes.Repeat([]byte{'x'}, 30))
	}
	if c.bytes > 100 || c.len() != 3 {
		t.Fatalf("cache holds %d entries, %d bytes; want 3 entries within 100 bytes", c.len(), c.bytes)
	}
	for i := 0; i < 10; i++ {
		_, ok := c.get(key(i))
		if want := i >= 7; ok != want {
			t.Errorf("entry %d cached %v, want %v", i, ok, want)
		}
	}
	c.put(key(99), bytes.Repeat([]byte{'x'}, 101))
	if _, ok := c.get(key(99)); ok {
		t.Error("an entry larger than the bound was cached")
	}
}

// TestStaticButaneTranslatedAtWrite: a Butane template that reads no
// variable is translated when it is written (Apply) or loaded (Build): the
// first request after the write translates nothing and gets what a
// translation gives; a template reading variables still translates on
// request.
func TestStaticButaneTranslatedAtWrite(t *testing.T) {
	const static = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hello\n"
	const perMachine = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: {{.hostname}}\n"
	base, err := Build(Catalog{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := base.Apply([]Change{
		{Kind: TemplateIgnition, ID: "static.yaml", Template: &Template{Kind: TemplateIgnition, Name: "static.yaml", Content: static}},
		{Kind: TemplateIgnition, ID: "machine.yaml", Template: &Template{Kind: TemplateIgnition, Name: "machine.yaml", Content: perMachine}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Build(Catalog{Templates: []Template{{Kind: TemplateIgnition, Name: "static.yaml", Content: static}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ignition.TranslateButane([]byte(static))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Snapshot{"written": snap, "loaded": loaded} {
		got, err := s.RenderIgnition("static.yaml", map[string]any{"hostname": "h"})
		if err != nil {
			t.Fatal(err)
		}
		if n := s.templates[TemplateIgnition]["static.yaml"].translated.requested.Load(); n != 0 {
			t.Errorf("%s: the first request translated %d times, want 0", name, n)
		}
		if string(got) != string(want) {
			t.Errorf("%s: answered %s, want %s", name, got, want)
		}
	}
	if _, err := snap.RenderIgnition("machine.yaml", map[string]any{"hostname": "h"}); err != nil {
		t.Fatal(err)
	}
	if n := snap.templates[TemplateIgnition]["machine.yaml"].translated.requested.Load(); n != 1 {
		t.Errorf("per-machine template: %d translations on request, want 1", n)
	}
}
