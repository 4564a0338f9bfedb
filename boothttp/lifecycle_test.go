package boothttp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"matchbox/matchbox"
)

// fakeLifecycle records what the boot endpoints ask and tell.
type fakeLifecycle struct {
	mu     sync.Mutex
	vars   []string // "id state mac host" per TemplateVars call
	served []string // "id state event profile" per Served call
	// completed is "id token" per Complete call
	completed []string
}

func (f *fakeLifecycle) TemplateVars(_ context.Context, id string, state matchbox.MachineState, mac, host string, _ func(string) bool) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vars = append(f.vars, id+" "+string(state)+" "+mac+" "+host)
	return map[string]any{"agent_token": "tok-" + mac}
}

func (f *fakeLifecycle) Served(_ context.Context, id string, state matchbox.MachineState, event string, p *matchbox.Profile) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = append(f.served, fmt.Sprintf("%s %s %s %s", id, state, event, p.ID))
}

func (f *fakeLifecycle) Complete(_ context.Context, id, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completed = append(f.completed, id+" "+token)
	if token != "good" {
		return &refusal{403}
	}
	return nil
}

type refusal struct{ status int }

func (r *refusal) Error() string   { return fmt.Sprintf("refused (%d)", r.status) }
func (r *refusal) HTTPStatus() int { return r.status }

// TestLifecycle: the boot endpoints ask the lifecycle for template
// variables with the machine's id, MAC and Host, and tell it of successful
// answers to known machines only.
func TestLifecycle(t *testing.T) {
	const known, unknown = "52:54:00:00:00:01", "52:54:00:00:00:02"
	cat := matchbox.Catalog{
		Profiles: []matchbox.Profile{
			{ID: "disc", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"token={{.agent_token}}"}}, GenericID: "g"},
		},
		Groups:    []matchbox.Group{{ID: "default", Profile: "disc"}},
		Templates: []matchbox.Template{{Kind: matchbox.TemplateGeneric, Name: "g", Content: "plain\n"}},
	}
	snap, err := matchbox.Build(cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		target     string
		status     int
		body       string // a part of the answer
		wantVars   []string
		wantServed []string
	}{
		{name: "unknown machine gets variables, nothing served", target: "/ipxe?mac=" + unknown, status: 200,
			body: "token=tok-" + unknown, wantVars: []string{"  " + unknown + " mb.example:8080"}},
		{name: "known machine gets its id", target: "/ipxe?mac=" + known, status: 200,
			body: "token=tok-" + known, wantVars: []string{"m1 provisioning " + known + " mb.example:8080"},
			wantServed: []string{"m1 provisioning http.ipxe disc"}},
		{name: "generic config served to a known machine", target: "/generic?mac=" + known, status: 200,
			body: "plain", wantVars: []string{"m1 provisioning " + known + " mb.example:8080"}, wantServed: []string{"m1 provisioning http.generic disc"}},
		{name: "no variables without a MAC either", target: "/ipxe?os=x", status: 200,
			body: "token=tok-", wantVars: []string{"   mb.example:8080"}},
		{name: "failures are not served", target: "/ignition?mac=" + known, status: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := &fakeLifecycle{}
			machines := fakeMachines{known: {ID: "m1", State: matchbox.StateProvisioning}}
			s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Machines: machines, Lifecycle: lc})
			if err != nil {
				t.Fatal(err)
			}
			w := get(t, s.Handler(), "http://mb.example:8080"+c.target)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.body) {
				t.Fatalf("GET %s: %d %q, want %d with %q", c.target, w.Code, w.Body, c.status, c.body)
			}
			if !slices.Equal(lc.vars, c.wantVars) {
				t.Errorf("TemplateVars calls %q, want %q", lc.vars, c.wantVars)
			}
			if !slices.Equal(lc.served, c.wantServed) {
				t.Errorf("Served calls %q, want %q", lc.served, c.wantServed)
			}
		})
	}
}

// TestObserved: requests from outside the boot networks, naming no
// machine, or rendered are answered alike but recorded nowhere and told
// to no lifecycle; the completion callback is refused from outside.
func TestObserved(t *testing.T) {
	const known, unknown = "52:54:00:00:00:01", "52:54:00:00:00:02"
	snap, err := matchbox.Build(matchbox.Catalog{
		Profiles:  []matchbox.Profile{{ID: "install", Boot: matchbox.Boot{Kernel: "/k"}, GenericID: "g"}},
		Groups:    []matchbox.Group{{ID: "default", Profile: "install"}},
		Templates: []matchbox.Template{{Kind: matchbox.TemplateGeneric, Name: "g", Content: "plain\n"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	boot := []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24"), netip.MustParsePrefix("fd99::/64")}
	cases := []struct {
		name       string
		nets       []netip.Prefix
		remote     string
		target     string
		wantEvents int
		wantServed int
	}{
		{"any network, known machine", nil, "192.0.2.1:1", "/ipxe?mac=" + known, 1, 1},
		{"any network, unknown machine is recorded", nil, "192.0.2.1:1", "/ipxe?mac=" + unknown, 1, 0},
		{"boot network, known machine", boot, "10.99.0.7:1", "/generic?mac=" + known, 1, 1},
		{"boot network over IPv6", boot, "[fd99::7]:1", "/generic?mac=" + known, 1, 1},
		{"outside the boot networks", boot, "192.0.2.1:1", "/generic?mac=" + known, 0, 0},
		{"outside the boot networks, unknown machine", boot, "192.0.2.1:1", "/ipxe?mac=" + unknown, 0, 0},
		{"no MAC or UUID", nil, "10.99.0.7:1", "/ipxe?os=installed", 0, 0},
		{"UUID of an unknown machine: nothing to record it under", nil, "10.99.0.7:1", "/ipxe?uuid=u1", 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc, ev := &fakeLifecycle{}, &sink{}
			machines := fakeMachines{known: {ID: "m1", State: matchbox.StateProvisioning}}
			s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Machines: machines, Lifecycle: lc, Events: ev, BootNetworks: c.nets})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, c.target, nil)
			req.RemoteAddr = c.remote
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				t.Fatalf("%d %q", w.Code, w.Body)
			}
			if len(ev.evs) != c.wantEvents || len(lc.served) != c.wantServed {
				t.Errorf("events %v, served %q; want %d events, %d served", ev.evs, lc.served, c.wantEvents, c.wantServed)
			}
			// The same request rendered changes nothing either way.
			lc.served, ev.evs = nil, nil
			q, _ := url.ParseQuery(strings.SplitN(c.target, "?", 2)[1])
			out, err := s.Render(context.Background(), strings.TrimPrefix(strings.SplitN(c.target, "?", 2)[0], "/"), q, "mb:8080")
			if err != nil || out.Status != http.StatusOK || string(out.Body) != w.Body.String() || out.Profile == nil || out.Profile.ID != "install" || out.Group.ID != "default" {
				t.Errorf("render: %+v %v; want the answer %q of group default, profile install", out, err, w.Body)
			}
			if len(ev.evs) != 0 || len(lc.served) != 0 {
				t.Errorf("render recorded %v, served %q", ev.evs, lc.served)
			}
		})
	}
}

// TestProvisionedCallback: POST /provisioned passes machine and token to
// the lifecycle and answers its refusals' status.
func TestProvisionedCallback(t *testing.T) {
	snap, _ := matchbox.Build(matchbox.Catalog{}, nil)
	boot := []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}
	cases := []struct {
		name, method, target, remote string
		want                         int
		wantCalls                    int
	}{
		{"good token", http.MethodPost, "/provisioned?machine=m1&token=good", "10.99.0.5:1", 200, 1},
		{"GET for fetchers", http.MethodGet, "/provisioned?machine=m1&token=good", "10.99.0.5:1", 200, 1},
		{"bad token", http.MethodPost, "/provisioned?machine=m1&token=bad", "10.99.0.5:1", 403, 1},
		{"no token", http.MethodPost, "/provisioned?machine=m1", "10.99.0.5:1", 400, 0},
		{"outside the boot networks", http.MethodPost, "/provisioned?machine=m1&token=good", "192.0.2.1:1", 403, 0},
		{"PUT", http.MethodPut, "/provisioned?machine=m1&token=good", "10.99.0.5:1", 405, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := &fakeLifecycle{}
			s, _ := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Lifecycle: lc, BootNetworks: boot})
			req := httptest.NewRequest(c.method, c.target, nil)
			req.RemoteAddr = c.remote
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != c.want || len(lc.completed) != c.wantCalls {
				t.Errorf("%d %q, calls %q; want %d, %d calls", w.Code, w.Body, lc.completed, c.want, c.wantCalls)
			}
		})
	}
}
