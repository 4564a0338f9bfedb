package lifecycle

import (
	"context"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"matchbox/agent/token"
	"matchbox/boothttp"
	"matchbox/matchbox"
	"matchbox/store"
)

// TestTemplateTokensOnlyWhenNamed serves the boot endpoints with the real
// lifecycle: a template that does not name agent_token or provisioned_url
// never has them signed (the signing counters stay put); one that names
// them gets a token and a callback URL that verify for the machine.
func TestTemplateTokensOnlyWhenNamed(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db"), ParseFact: parseFact})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const plainButane = "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: {{.hostname}}\n"
	objs := []*store.Object{
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "plain", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"hostname={{.hostname}}", "console=ttyS0"}}, IgnitionID: "plain.yaml"}},
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "tokens", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"matchbox.token={{.agent_token}}"}}, IgnitionID: "storage.yaml"}},
		{Kind: matchbox.TemplateIgnition, Template: &matchbox.Template{Kind: matchbox.TemplateIgnition, Name: "plain.yaml", Content: plainButane}},
		{Kind: matchbox.TemplateIgnition, Template: &matchbox.Template{Kind: matchbox.TemplateIgnition, Name: "storage.yaml", Content: storageButane}},
		{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "a", Profile: "plain", Selector: map[string]string{"mac": "52:54:00:00:00:0a"}, Metadata: map[string]any{"hostname": "node-a"}}},
		{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "b", Profile: "tokens", Selector: map[string]string{"mac": "52:54:00:00:00:0b"}}},
	}
	if _, _, err := st.Import(ctx, "test", objs); err != nil {
		t.Fatal(err)
	}
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, AgentKey: agentKey, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	boot, err := boothttp.New(boothttp.Config{Snapshot: st.Snapshot, Machines: boothttp.IndexLookup{Index: st}, Lifecycle: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(boot.Handler())
	defer srv.Close()
	f := &fixture{st: st, svc: svc, srv: srv}
	signed := func() (agent, provisioned float64) {
		return signedValue(t, metrics.signedAgent), signedValue(t, metrics.signedProvisioned)
	}

	steps := []struct {
		path               string
		want               string
		agent, provisioned float64 // counters after the request
	}{
		{"/ipxe?mac=52:54:00:00:00:0a", "hostname=node-a", 0, 0},
		{"/ignition?mac=52:54:00:00:00:0a", "node-a", 0, 0},
		{"/ipxe?mac=52:54:00:00:00:0b", "matchbox.token=v1.", 1, 0},
		{"/ignition?mac=52:54:00:00:00:0b", "/provisioned?", 1, 1},
		{"/metadata?mac=52:54:00:00:00:0a", "PROVISIONED_URL=", 2, 2},
	}
	for _, s := range steps {
		body := f.get(t, s.path)
		if !strings.Contains(body, s.want) {
			t.Fatalf("%s: %q lacks %q", s.path, body, s.want)
		}
		if a, p := signed(); a != s.agent || p != s.provisioned {
			t.Errorf("%s: signed %v agent and %v provisioned tokens in all, want %v and %v", s.path, a, p, s.agent, s.provisioned)
		}
	}

	id := store.MachineIDFromMAC("52:54:00:00:00:0b")
	script := f.get(t, "/ipxe?mac=52:54:00:00:00:0b")
	tok := strings.Fields(script[strings.Index(script, "matchbox.token=")+len("matchbox.token="):])[0]
	if err := token.Verify(agentKey, id, tok); err != nil {
		t.Errorf("the script's agent token does not verify for %s: %v", id, err)
	}
	cb, err := url.Parse(callbackURL(t, f.get(t, "/ignition?mac=52:54:00:00:00:0b")))
	if err != nil {
		t.Fatal(err)
	}
	if cb.Path != ProvisionedPath || cb.Query().Get("machine") != id || cb.Query().Get("token") != svc.completionToken(id) {
		t.Errorf("callback URL %s: want %s?machine=%s&token=<the machine's completion token>", cb, ProvisionedPath, id)
	}
}

func signedValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkIPXETemplateVars renders /ipxe through the real lifecycle for a
// profile whose kernel arguments name only group metadata (no HMAC since
// the variables are computed only when named) and for one naming
// agent_token and provisioned_url (two HMACs per request).
func BenchmarkIPXETemplateVars(b *testing.B) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"metadata-only", []string{"hostname={{.hostname}}", "console=ttyS0"}},
		{"tokens", []string{"hostname={{.hostname}}", "matchbox.token={{.agent_token}}", "cb={{.provisioned_url}}"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			st, err := store.Open(ctx, store.Config{Path: filepath.Join(b.TempDir(), "matchbox.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			objs := []*store.Object{
				{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "p", Boot: matchbox.Boot{Kernel: "/k", Args: c.args}}},
				{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "a", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:0a"}, Metadata: map[string]any{"hostname": "node-a"}}},
			}
			if _, _, err := st.Import(ctx, "test", objs); err != nil {
				b.Fatal(err)
			}
			svc, err := New(Config{Store: st, AgentKey: agentKey})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			boot, err := boothttp.New(boothttp.Config{Snapshot: st.Snapshot, Machines: boothttp.IndexLookup{Index: st}, Lifecycle: svc})
			if err != nil {
				b.Fatal(err)
			}
			h := boot.Handler()
			req := httptest.NewRequest("GET", "/ipxe?mac=52:54:00:00:00:0a", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
