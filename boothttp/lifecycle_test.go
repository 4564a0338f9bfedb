package boothttp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"matchbox/matchbox"
)

// fakeLifecycle records what the boot endpoints ask and tell.
type fakeLifecycle struct {
	mu     sync.Mutex
	vars   []string // "id mac host" per TemplateVars call
	served []string // "id state event" per Served call
}

func (f *fakeLifecycle) TemplateVars(_ context.Context, id, mac, host string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vars = append(f.vars, id+" "+mac+" "+host)
	return map[string]any{"agent_token": "tok-" + mac}
}

func (f *fakeLifecycle) Served(_ context.Context, id string, state matchbox.MachineState, event string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = append(f.served, fmt.Sprintf("%s %s %s", id, state, event))
}

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
			body: "token=tok-" + unknown, wantVars: []string{" " + unknown + " mb.example:8080"}},
		{name: "known machine gets its id", target: "/ipxe?mac=" + known, status: 200,
			body: "token=tok-" + known, wantVars: []string{"m1 " + known + " mb.example:8080"},
			wantServed: []string{"m1 provisioning http.ipxe"}},
		{name: "generic config served to a known machine", target: "/generic?mac=" + known, status: 200,
			body: "plain", wantVars: []string{"m1 " + known + " mb.example:8080"}, wantServed: []string{"m1 provisioning http.generic"}},
		{name: "no variables without a MAC either", target: "/ipxe?os=x", status: 200,
			body: "token=tok-", wantVars: []string{"  mb.example:8080"}},
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
