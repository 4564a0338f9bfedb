package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/agent/token"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// fakeStore is a Store of machines held in memory: what the lifecycle's
// boot hooks need, without SQLite.
type fakeStore struct {
	mu     sync.Mutex
	states map[string]matchbox.MachineState
	events []string // "machine type"
	// details holds each event's detail, in order
	details []map[string]any
	// snap is the catalog; nil without one
	snap *matchbox.Snapshot
	// since is each machine's last change (UpdatedAt)
	since map[string]time.Time
	// group is each machine's enrolled group
	group map[string]string
}

func (f *fakeStore) Snapshot() *matchbox.Snapshot { return f.snap }

func (f *fakeStore) LookupMachineByID(id string) (matchbox.Machine, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[id]
	return matchbox.Machine{ID: id, State: st, UpdatedAt: f.since[id], Group: f.group[id], MACs: []string{strings.ReplaceAll(id, "-", ":")}}, ok
}

func (f *fakeStore) ListMachines(_ context.Context, flt store.MachineFilter) ([]*matchbox.Machine, error) {
	f.mu.Lock()
	ids := make([]string, 0, len(f.states))
	for id, st := range f.states {
		if flt.State == "" || st == flt.State {
			ids = append(ids, id)
		}
	}
	f.mu.Unlock()
	slices.Sort(ids)
	out := make([]*matchbox.Machine, 0, len(ids))
	for _, id := range ids {
		m, _ := f.LookupMachineByID(id)
		out = append(out, &m)
	}
	return out, nil
}

func (f *fakeStore) SetMachineState(_ context.Context, id string, state matchbox.MachineState, from ...matchbox.MachineState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.states[id]
	if !ok {
		return fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
	}
	if len(from) > 0 && !slices.Contains(from, cur) {
		return fmt.Errorf("machine %q is %s: %w", id, cur, store.ErrVersionConflict)
	}
	f.states[id] = state
	return nil
}

func (f *fakeStore) SetMachineBMC(context.Context, string, string) error { return nil }

func (f *fakeStore) MachineBMC(context.Context, string) (string, error) { return "", nil }

func (f *fakeStore) RecordInventory(context.Context, string, hardware.Inventory) (bool, error) {
	return false, nil
}

func (f *fakeStore) Enroll(context.Context, string, string) (matchbox.MachineState, error) {
	return "", nil
}

func (f *fakeStore) AppendEvents(_ context.Context, evs []matchbox.BootEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		f.events = append(f.events, ev.MachineID+" "+ev.Type)
		f.details = append(f.details, ev.Detail)
	}
	return nil
}

// TestServed: a provisioning machine becomes provisioned by a fetch only
// when its profile names that endpoint in provisioned_by.
func TestServed(t *testing.T) {
	byCallback := &matchbox.Profile{ID: "p"}
	byIgnition := &matchbox.Profile{ID: "p", ProvisionedBy: "ignition"}
	byGeneric := &matchbox.Profile{ID: "p", ProvisionedBy: "generic"}
	cases := []struct {
		name       string
		state      matchbox.MachineState
		event      string
		profile    *matchbox.Profile
		wantState  matchbox.MachineState
		wantEvents []string
	}{
		{"ignition fetch changes nothing by default", matchbox.StateProvisioning, matchbox.EventIgnition, byCallback, matchbox.StateProvisioning, nil},
		{"ignition marks provisioned when opted in", matchbox.StateProvisioning, matchbox.EventIgnition, byIgnition, matchbox.StateProvisioned, []string{"m1 " + EventProvisioned}},
		{"generic marks provisioned when opted in", matchbox.StateProvisioning, matchbox.EventGeneric, byGeneric, matchbox.StateProvisioned, []string{"m1 " + EventProvisioned}},
		{"another endpoint than the one named", matchbox.StateProvisioning, matchbox.EventIgnition, byGeneric, matchbox.StateProvisioning, nil},
		{"ipxe script is not the config", matchbox.StateProvisioning, matchbox.EventIPXE, byIgnition, matchbox.StateProvisioning, nil},
		{"ready machine stays ready", matchbox.StateReady, matchbox.EventIgnition, byIgnition, matchbox.StateReady, nil},
		{"provisioned stays provisioned", matchbox.StateProvisioned, matchbox.EventIgnition, byIgnition, matchbox.StateProvisioned, nil},
		{"no profile", matchbox.StateProvisioning, matchbox.EventIgnition, nil, matchbox.StateProvisioning, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &fakeStore{states: map[string]matchbox.MachineState{"m1": c.state}}
			svc, err := New(Config{Store: st})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the request is over: the transition must outlive it
			svc.Served(ctx, "m1", c.state, c.event, c.profile)
			if got := st.states["m1"]; got != c.wantState {
				t.Errorf("state %s, want %s", got, c.wantState)
			}
			if !slices.Equal(st.events, c.wantEvents) {
				t.Errorf("events %q, want %q", st.events, c.wantEvents)
			}
		})
	}
}

// TestTemplateVars: the agent's identity for known and unknown machines,
// the base URL from the configuration or the request's Host; the agent
// token only for a machine being discovered or provisioned, an empty one
// for the other states.
func TestTemplateVars(t *testing.T) {
	cases := []struct {
		name            string
		agent           []byte
		bootURL         string
		id              string
		state           matchbox.MachineState
		mac, host       string
		wantID, wantURL string // wantID "" expects no variables
		wantToken       bool
	}{
		{name: "known machine", agent: agentKey, id: "m1", state: matchbox.StateDiscovered, mac: "52:54:00:00:00:01", host: "mb:8080", wantID: "m1", wantURL: "http://mb:8080", wantToken: true},
		{name: "unknown machine named by its MAC", agent: agentKey, mac: "52:54:00:00:00:02", host: "mb:8080", wantID: "52-54-00-00-00-02", wantURL: "http://mb:8080", wantToken: true},
		{name: "boot URL wins over Host", agent: agentKey, bootURL: "http://10.0.0.1:8080/", id: "m1", state: matchbox.StateProvisioning, host: "mb:8080", wantID: "m1", wantURL: "http://10.0.0.1:8080", wantToken: true},
		{name: "ready machine: no agent token", agent: agentKey, id: "m1", state: matchbox.StateReady, host: "mb:8080", wantID: "m1", wantURL: "http://mb:8080"},
		{name: "provisioned machine: no agent token", agent: agentKey, id: "m1", state: matchbox.StateProvisioned, host: "mb:8080", wantID: "m1", wantURL: "http://mb:8080"},
		{name: "failed machine: no agent token", agent: agentKey, id: "m1", state: matchbox.StateFailed, host: "mb:8080", wantID: "m1", wantURL: "http://mb:8080"},
		{name: "nothing names the machine", agent: agentKey, host: "mb:8080"},
		{name: "no agent key", id: "m1", host: "mb:8080"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, err := New(Config{Store: &fakeStore{}, AgentKey: c.agent, BootURL: c.bootURL})
			if err != nil {
				t.Fatal(err)
			}
			vars := svc.TemplateVars(context.Background(), c.id, c.state, c.mac, c.host, nil)
			if c.wantID == "" {
				if vars != nil {
					t.Fatalf("vars %v, want none", vars)
				}
				return
			}
			if vars["machine_id"] != c.wantID || vars["matchbox_url"] != c.wantURL {
				t.Errorf("vars %v, want machine_id %s, matchbox_url %s", vars, c.wantID, c.wantURL)
			}
			tok, ok := vars["agent_token"].(string)
			if !ok {
				t.Fatalf("agent_token %v is not a string: templates naming it would fail", vars["agent_token"])
			}
			if !c.wantToken {
				if tok != "" {
					t.Errorf("a %s machine gets agent_token %q, want none", c.state, tok)
				}
				return
			}
			if err := token.Verify(agentKey, c.wantID, tok); err != nil || !strings.HasPrefix(tok, "v1.") {
				t.Errorf("agent_token %q does not verify for %s: %v", tok, c.wantID, err)
			}
		})
	}
}

// TestBootRequestPathAllocatesNothing: what every boot request calls for
// a template that names none of the lifecycle's variables (TemplateVars)
// and for a profile that names no completion event (Served) returns nil
// and does nothing, allocating nothing; a template naming one of them
// still gets them all.
func TestBootRequestPathAllocatesNothing(t *testing.T) {
	svc, err := New(Config{Store: &fakeStore{}, AgentKey: agentKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	onlyHostname := func(name string) bool { return name == "hostname" }
	if vars := svc.TemplateVars(ctx, "m1", matchbox.StateDiscovered, "", "mb:8080", onlyHostname); vars != nil {
		t.Fatalf("a template naming only hostname gets %v, want no lifecycle variables", vars)
	}
	onlyURL := func(name string) bool { return name == "matchbox_url" }
	if vars := svc.TemplateVars(ctx, "m1", matchbox.StateDiscovered, "", "mb:8080", onlyURL); vars["matchbox_url"] != "http://mb:8080" || vars["machine_id"] != "m1" {
		t.Fatalf("a template naming matchbox_url gets %v", vars)
	}
	p := &matchbox.Profile{ID: "p"}
	if n := testing.AllocsPerRun(100, func() {
		svc.TemplateVars(ctx, "m1", matchbox.StateDiscovered, "", "mb:8080", onlyHostname)
		svc.Served(ctx, "m1", matchbox.StateProvisioning, matchbox.EventIPXE, p)
	}); n != 0 {
		t.Fatalf("%v allocations per boot request for lifecycle variables and completion, want 0", n)
	}
}
