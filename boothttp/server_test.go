package boothttp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"matchbox/matchbox"
)

const butaneTemplate = `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      contents:
        inline: {{.hostname}}
    - path: /etc/cluster
      contents:
        inline: {{.etcd_initial_cluster}} mac={{.mac}} q={{.request.query.os}}
`

func testCatalog() matchbox.Catalog {
	return matchbox.Catalog{
		Profiles: []matchbox.Profile{
			{ID: "etcd", Name: "etcd node", Boot: matchbox.Boot{
				Kernel: "/assets/flatcar/vmlinuz",
				Initrd: []string{"/assets/flatcar/a.cpio.gz", "/assets/flatcar/b.cpio.gz"},
				Args:   []string{"flatcar.first_boot=yes", "flatcar.config.url=http://mb/ignition?uuid=${uuid}&mac=${mac:hexhyp}", "node={{.hostname}}"},
			}, IgnitionID: "etcd.yaml", GenericID: "gen.txt"},
			{ID: "raw", Boot: matchbox.Boot{Kernel: "/k"}, IgnitionID: "raw.ign"},
			{ID: "broken", Boot: matchbox.Boot{Kernel: "/k"}, IgnitionID: "needs-missing.yaml"},
			{ID: "discovery", Boot: matchbox.Boot{Kernel: "/assets/discovery/vmlinuz"}},
			{ID: "dangling", Boot: matchbox.Boot{Kernel: "/k"}, IgnitionID: "absent.ign", GenericID: "absent"},
		},
		Groups: []matchbox.Group{
			{ID: "default", Profile: "discovery"},
			{ID: "node1", Profile: "etcd", Selector: map[string]string{"mac": "52:54:00:a1:9c:ae"}, Metadata: map[string]any{
				"hostname": "node1.example.com", "etcd_initial_cluster": "node1=http://node1:2380",
				"nested": map[string]any{"key": "v", "n": 3.0}, "list": []any{"a"},
			}},
			{ID: "raw", Profile: "raw", Selector: map[string]string{"uuid": "raw-uuid"}},
			{ID: "broken", Profile: "broken", Selector: map[string]string{"uuid": "broken-uuid"}},
			// Dangling references, as single-object writes may leave them.
			{ID: "orphan", Profile: "ghost", Selector: map[string]string{"uuid": "orphan-uuid"}},
			{ID: "dangling", Profile: "dangling", Selector: map[string]string{"uuid": "dangling-uuid"}},
		},
		Templates: []matchbox.Template{
			{Kind: matchbox.TemplateIgnition, Name: "etcd.yaml", Content: butaneTemplate},
			{Kind: matchbox.TemplateIgnition, Name: "raw.ign", Content: `{"ignition":{"version":"3.3.0"}}`},
			{Kind: matchbox.TemplateIgnition, Name: "needs-missing.yaml", Content: "variant: flatcar\nversion: 1.0.0\n# {{.missing}}\n"},
			{Kind: matchbox.TemplateGeneric, Name: "gen.txt", Content: "host={{.hostname}} mac={{.mac}} raw={{.request.raw_query}} os={{index .request.query \"os\"}}\n"},
		},
	}
}

type fakeMachines map[string]MachineView

func (f fakeMachines) LookupMachine(_ context.Context, mac, uuid string) (MachineView, bool) {
	m, ok := f[mac]
	return m, ok
}

type sink struct {
	mu  sync.Mutex
	evs []matchbox.BootEvent
}

func (s *sink) Record(ev matchbox.BootEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
	return true
}

func newTestServer(t *testing.T, machines MachineLookup, events EventSink, assets string) http.Handler {
	t.Helper()
	snap, err := matchbox.Build(testCatalog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Machines: machines, Events: events, AssetsDir: assets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Handler()
}

func get(t *testing.T, h http.Handler, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestEndpoints(t *testing.T) {
	h := newTestServer(t, nil, nil, "")
	etcdIPXE := "#!ipxe\nkernel /assets/flatcar/vmlinuz flatcar.first_boot=yes flatcar.config.url=http://mb/ignition?uuid=${uuid}&mac=${mac:hexhyp} node=node1.example.com\ninitrd /assets/flatcar/a.cpio.gz\ninitrd /assets/flatcar/b.cpio.gz\nboot\n"
	cases := []struct {
		name, target string
		code         int
		body         string // exact, or a substring when prefixed with "~"
	}{
		{"boot.ipxe", "/boot.ipxe", 200, "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n"},
		{"boot.ipxe.0", "/boot.ipxe.0", 200, "~chain ipxe?uuid=${uuid}"},
		{"ipxe colon mac", "/ipxe?mac=52:54:00:a1:9c:ae", 200, etcdIPXE},
		{"ipxe hyphen mac (iPXE hexhyp)", "/ipxe?uuid=&mac=52-54-00-a1-9c-ae&domain=&hostname=&serial=&arch=x86_64", 200, etcdIPXE},
		{"ipxe bare upper-case mac", "/ipxe?mac=525400A19CAE", 200, etcdIPXE},
		{"ipxe unknown mac gets default", "/ipxe?mac=52:54:00:00:00:09", 200, "#!ipxe\nkernel /assets/discovery/vmlinuz\nboot\n"},
		{"grub", "/grub?mac=52:54:00:a1:9c:ae", 200, "~linuxefi \"/assets/flatcar/vmlinuz\" flatcar.first_boot=yes"},
		{"grub initrds", "/grub?mac=52:54:00:a1:9c:ae", 200, "~initrd  \"/assets/flatcar/a.cpio.gz\" \"/assets/flatcar/b.cpio.gz\"\n"},
		{"ignition raw served as is", "/ignition?uuid=raw-uuid", 200, `{"ignition":{"version":"3.3.0"}}`},
		{"ignition butane rendered", "/ignition?mac=52:54:00:a1:9c:ae&os=installed", 200, "~data:,node1.example.com"},
		{"ignition missing key", "/ignition?uuid=broken-uuid", 500, "~map has no entry for key \"missing\""},
		{"ignition without ignition_id", "/ignition?mac=52:54:00:00:00:09", 404, "~has no ignition_id"},
		{"group whose profile is missing", "/ipxe?uuid=orphan-uuid", 404, "group \"orphan\" names profile \"ghost\": profile does not exist\n"},
		{"profile whose ignition template is missing", "/ignition?uuid=dangling-uuid", 404, "profile \"dangling\": ignition template \"absent.ign\": template does not exist\n"},
		{"profile whose generic template is missing", "/generic?uuid=dangling-uuid", 404, "profile \"dangling\": generic template \"absent\": template does not exist\n"},
		{"profile with missing templates still boots", "/ipxe?uuid=dangling-uuid", 200, "#!ipxe\nkernel /k\nboot\n"},
		{"generic", "/generic?mac=52-54-00-a1-9c-ae&os=x", 200, "host=node1.example.com mac=52:54:00:a1:9c:ae raw=mac=52-54-00-a1-9c-ae&os=x os=x\n"},
		{"metadata", "/metadata?mac=52:54:00:a1:9c:ae&os=installed", 200,
			"ETCD_INITIAL_CLUSTER=node1=http://node1:2380\nHOSTNAME=node1.example.com\nMAC=52:54:00:a1:9c:ae\nNESTED_KEY=v\nNESTED_N=3\nREQUEST_QUERY_MAC=52:54:00:a1:9c:ae\nREQUEST_QUERY_OS=installed\nREQUEST_RAW_QUERY=mac=52:54:00:a1:9c:ae&os=installed\n"},
		{"post refused", "", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w *httptest.ResponseRecorder
			if c.target == "" {
				w = httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ipxe", nil))
			} else {
				w = get(t, h, c.target)
			}
			if w.Code != c.code {
				t.Fatalf("status %d, want %d; body %q", w.Code, c.code, w.Body.String())
			}
			body := w.Body.String()
			if strings.HasPrefix(c.body, "~") {
				if !strings.Contains(body, c.body[1:]) {
					t.Fatalf("body %q does not contain %q", body, c.body[1:])
				}
			} else if c.body != "" && body != c.body {
				t.Fatalf("body\n%q\nwant\n%q", body, c.body)
			}
		})
	}
}

func TestIgnitionIsValidJSON(t *testing.T) {
	h := newTestServer(t, nil, nil, "")
	w := get(t, h, "/ignition?mac=52:54:00:a1:9c:ae&os=installed")
	var cfg struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &cfg); err != nil {
		t.Fatalf("not JSON: %v: %s", err, w.Body)
	}
	if w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", w.Header().Get("Content-Type"))
	}
	if len(cfg.Storage.Files) != 2 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	got, err := dataURL(cfg.Storage.Files[1].Contents.Source)
	if err != nil || got != "node1=http://node1:2380 mac=52:54:00:a1:9c:ae q=installed" {
		t.Fatalf("rendered contents %q, %v", got, err)
	}
}

// dataURL decodes the data: URLs Butane writes (plain or base64).
func dataURL(src string) (string, error) {
	if rest, ok := strings.CutPrefix(src, "data:;base64,"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		return string(b), err
	}
	if rest, ok := strings.CutPrefix(src, "data:,"); ok {
		return url.PathUnescape(rest)
	}
	return "", fmt.Errorf("not a data URL: %q", src)
}

func TestNoMatch(t *testing.T) {
	snap, err := matchbox.Build(matchbox.Catalog{
		Profiles: []matchbox.Profile{{ID: "p"}},
		Groups:   []matchbox.Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }})
	w := get(t, s.Handler(), "/ipxe?mac=52:54:00:00:00:02&os=x")
	if w.Code != 404 || strings.TrimSpace(w.Body.String()) != "no group matches labels {mac=52:54:00:00:00:02,os=x}" {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
}

func TestProvisionedBootsFromDisk(t *testing.T) {
	ev := &sink{}
	machines := fakeMachines{
		"52:54:00:a1:9c:ae": {ID: "node1", State: matchbox.StateProvisioned},
		"52:54:00:00:00:07": {ID: "m7", State: matchbox.StateProvisioning, Labels: map[string]string{"mac": "52:54:00:a1:9c:ae"}},
	}
	h := newTestServer(t, machines, ev, "")
	if w := get(t, h, "/ipxe?mac=52:54:00:a1:9c:ae"); w.Body.String() != "#!ipxe\nexit\n" {
		t.Fatalf("provisioned machine got %q", w.Body)
	}
	// Stored labels join the request's labels (request wins on conflicts).
	if w := get(t, h, "/ipxe?mac=52:54:00:00:00:07"); !strings.Contains(w.Body.String(), "/assets/discovery/vmlinuz") {
		t.Fatalf("request mac must win over stored label: %q", w.Body)
	}
	get(t, h, "/ipxe?mac=52:54:00:00:00:99")
	get(t, h, "/ipxe?os=nomac")
	if len(ev.evs) != 3 {
		t.Fatalf("events: %+v", ev.evs)
	}
	if ev.evs[0].MachineID != "node1" || ev.evs[0].Type != "http.ipxe.boot_disk" {
		t.Errorf("event 0: %+v", ev.evs[0])
	}
	if ev.evs[2].MachineID != "" || ev.evs[2].MAC != "52:54:00:00:00:99" || ev.evs[2].Outcome.Group != "default" || ev.evs[2].Outcome.Status != 200 {
		t.Errorf("event for unknown MAC: %+v", ev.evs[2])
	}
}

func TestAssets(t *testing.T) {
	dir := t.TempDir()
	assets := filepath.Join(dir, "assets")
	os.MkdirAll(filepath.Join(assets, "flatcar"), 0o755)
	os.WriteFile(filepath.Join(assets, "flatcar", "vmlinuz"), []byte("0123456789"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(assets, "escape"))
	os.Symlink("vmlinuz", filepath.Join(assets, "flatcar", "inside"))
	h := newTestServer(t, nil, nil, assets)
	cases := []struct {
		target string
		code   int
		body   string
		hdr    []string
	}{
		{"/assets/flatcar/vmlinuz", 200, "0123456789", nil},
		{"/assets/flatcar/vmlinuz", 206, "2345", []string{"Range", "bytes=2-5"}},
		{"/assets/flatcar/inside", 200, "0123456789", nil},
		{"/assets/flatcar/", 400, "", nil},
		{"/assets/flatcar", 404, "", nil},
		{"/assets/escape", 403, "", nil},
		{"/assets/../secret", 400, "", nil},
		{"/assets/flatcar/%2e%2e/%2e%2e/secret", 400, "", nil},
		{"/assets/flatcar/..%2f..%2fsecret", 400, "", nil},
		{"/assets/flatcar\\..\\..\\secret", 400, "", nil},
		{"/assets/nope", 404, "", nil},
	}
	for _, c := range cases {
		w := get(t, h, c.target, c.hdr...)
		if w.Code != c.code {
			t.Errorf("%s: status %d, want %d (%q)", c.target, w.Code, c.code, w.Body)
			continue
		}
		if c.body != "" && w.Body.String() != c.body {
			t.Errorf("%s: body %q, want %q", c.target, w.Body, c.body)
		}
		if strings.Contains(w.Body.String(), "secret") && c.code != 200 {
			t.Errorf("%s leaked the file outside the assets dir", c.target)
		}
	}
	// Through a real server too, where the client does not clean the path.
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []string{"/assets/../secret", "/assets/flatcar/../../secret", "/assets/%2e%2e/secret"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
		req.URL.Opaque = p
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "secret") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, b)
		}
	}
}

func benchmarkIPXE(b *testing.B, groups int) {
	c := matchbox.Catalog{Profiles: []matchbox.Profile{{ID: "p", Boot: matchbox.Boot{Kernel: "/assets/k", Initrd: []string{"/assets/i"}, Args: []string{"console=ttyS0"}}}}}
	c.Groups = append(c.Groups, matchbox.Group{ID: "default", Profile: "p"})
	for i := 0; i < groups-1; i++ {
		c.Groups = append(c.Groups, matchbox.Group{ID: fmt.Sprintf("g%d", i), Profile: "p", Selector: map[string]string{"mac": fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}})
	}
	snap, err := matchbox.Build(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }})
	h := s.Handler()
	target := fmt.Sprintf("/ipxe?mac=02-00-00-%02x-%02x-%02x", (groups/2)>>16&0xff, (groups/2)>>8&0xff, (groups/2)&0xff)
	req := httptest.NewRequest(http.MethodGet, target, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkIPXE measures /ipxe?mac=... through the real router; the cost per
// request must stay flat as the number of MAC groups grows.
func BenchmarkIPXE(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) { benchmarkIPXE(b, n) })
	}
}

func TestFront(t *testing.T) {
	snap, err := matchbox.Build(testCatalog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k"), []byte("kernel"), 0o644)
	s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, AssetsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "next", http.StatusTeapot) })
	h := s.Front(next)
	for _, c := range []struct {
		method, target string
		code           int
		body           string
	}{
		{"GET", "/ipxe?mac=52:54:00:a1:9c:ae", 200, "kernel /assets/flatcar/vmlinuz"},
		{"HEAD", "/boot.ipxe", 200, ""},
		{"GET", "/assets/k", 200, "kernel"},
		{"GET", "/assets/../k", 400, ""},
		{"POST", "/ipxe", 405, ""},
		{"GET", "/api/v1/profiles", 418, "next"},
		{"GET", "/ipxe/extra", 418, "next"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.target, nil))
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.target, w.Code, w.Body, c.code, c.body)
		}
	}
}
