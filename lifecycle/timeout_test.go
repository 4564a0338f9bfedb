package lifecycle

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/matchbox"
)

func timeoutCatalog(t *testing.T) *matchbox.Snapshot {
	t.Helper()
	snap, err := matchbox.Build(matchbox.Catalog{
		Profiles: []matchbox.Profile{
			{ID: "install", Boot: matchbox.Boot{Kernel: "/k"}, ProvisioningTimeout: "10m"},
			{ID: "forever", Boot: matchbox.Boot{Kernel: "/k"}},
		},
		Groups: []matchbox.Group{
			{ID: "install", Profile: "install", Selector: map[string]string{"mac": "52:54:00:00:00:01"}},
			{ID: "enrolled", Profile: "install", Selector: map[string]string{"rack": "r9"}},
			{ID: "default", Profile: "forever"},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestExpireProvisioning: a machine provisioning past its profile's
// deadline becomes failed, with the reason on its timeline and in the
// metrics; others are left alone.
func TestExpireProvisioning(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	st := &fakeStore{
		snap: timeoutCatalog(t),
		states: map[string]matchbox.MachineState{
			"52-54-00-00-00-01": matchbox.StateProvisioning, // install, 11 min: fails
			"52-54-00-00-00-02": matchbox.StateProvisioning, // default profile, no deadline
			"52-54-00-00-00-03": matchbox.StateProvisioning, // enrolled into install, 9 min: waits
			"52-54-00-00-00-04": matchbox.StateProvisioning, // enrolled into install, 20 min: fails
			"52-54-00-00-00-05": matchbox.StateReady,        // not provisioning
		},
		since: map[string]time.Time{
			"52-54-00-00-00-01": now.Add(-11 * time.Minute),
			"52-54-00-00-00-02": now.Add(-24 * time.Hour),
			"52-54-00-00-00-03": now.Add(-9 * time.Minute),
			"52-54-00-00-00-04": now.Add(-20 * time.Minute),
			"52-54-00-00-00-05": now.Add(-24 * time.Hour),
		},
		group: map[string]string{"52-54-00-00-00-03": "enrolled", "52-54-00-00-00-04": "enrolled", "52-54-00-00-00-05": "enrolled"},
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := svc.ExpireProvisioning(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"52-54-00-00-00-01", "52-54-00-00-00-04"}; !slices.Equal(failed, want) {
		t.Fatalf("failed %q, want %q", failed, want)
	}
	for id, want := range map[string]matchbox.MachineState{
		"52-54-00-00-00-01": matchbox.StateFailed, "52-54-00-00-00-02": matchbox.StateProvisioning,
		"52-54-00-00-00-03": matchbox.StateProvisioning, "52-54-00-00-00-04": matchbox.StateFailed,
		"52-54-00-00-00-05": matchbox.StateReady,
	} {
		if got := st.states[id]; got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
	if want := []string{"52-54-00-00-00-01 " + EventFailed, "52-54-00-00-00-04 " + EventFailed}; !slices.Equal(st.events, want) {
		t.Errorf("events %q, want %q", st.events, want)
	}
	if d := st.details[0]; d["reason"] != ReasonTimeout || d["timeout"] != "10m" || d["profile"] != "install" {
		t.Errorf("event detail %v", d)
	}
	if got := counterValue(t, reg, "matchbox_machine_failures_total", ReasonTimeout); got != 2 {
		t.Errorf("matchbox_machine_failures_total{reason=%q} = %v, want 2", ReasonTimeout, got)
	}
	// Failed machines are not failed again.
	if failed, err := svc.ExpireProvisioning(context.Background(), now); err != nil || len(failed) != 0 {
		t.Errorf("second sweep: %q %v", failed, err)
	}
}

// TestComplete: the callback needs the machine's own token, moves a
// provisioning or failed machine to provisioned, and works once.
func TestComplete(t *testing.T) {
	ctx := context.Background()
	st := &fakeStore{states: map[string]matchbox.MachineState{
		"m1": matchbox.StateProvisioning, "m2": matchbox.StateFailed, "m3": matchbox.StateReady,
	}}
	svc, err := New(Config{Store: st, AgentKey: agentKey})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(id string) string {
		u, _ := svc.TemplateVars(ctx, id, matchbox.StateProvisioning, "", "mb:8080", nil)["provisioned_url"].(string)
		_, q, _ := strings.Cut(u, "token=")
		return q
	}
	cases := []struct {
		name      string
		id, token string
		want      error
		state     matchbox.MachineState
	}{
		{"another machine's token", "m1", tok("m2"), ErrBadCompletionToken, matchbox.StateProvisioning},
		{"agent token is not a completion token", "m1", "v1.x", ErrBadCompletionToken, matchbox.StateProvisioning},
		{"provisioning machine", "m1", tok("m1"), nil, matchbox.StateProvisioned},
		{"once only", "m1", tok("m1"), ErrNotProvisioning, matchbox.StateProvisioned},
		{"timed-out machine installed after all", "m2", tok("m2"), nil, matchbox.StateProvisioned},
		{"ready machine", "m3", tok("m3"), ErrNotProvisioning, matchbox.StateReady},
		{"unknown machine", "m4", tok("m4"), ErrUnknownMachine, ""},
	}
	for _, c := range cases {
		err := svc.Complete(ctx, c.id, c.token)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if got := st.states[c.id]; got != c.state {
			t.Errorf("%s: state %s, want %s", c.name, got, c.state)
		}
	}
	u := svc.TemplateVars(ctx, "m1", matchbox.StateProvisioning, "", "mb:8080", nil)["provisioned_url"]
	if u != "http://mb:8080/provisioned?machine=m1&token="+tok("m1") {
		t.Errorf("provisioned_url %v", u)
	}
}

// TestTransitionsDocumented: docs/lifecycle.md holds the code's table.
func TestTransitionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/lifecycle.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), TransitionsMarkdown()) {
		t.Errorf("docs/lifecycle.md lacks the transitions table of lifecycle.Transitions; put this in it:\n%s", TransitionsMarkdown())
	}
}

// TestTransitionsUsed: every trigger the code uses is in the table, and
// each state is reachable.
func TestTransitionsUsed(t *testing.T) {
	reached := map[matchbox.MachineState]bool{matchbox.StateDiscovered: true}
	for _, tr := range Transitions() {
		reached[tr.To] = true
		for _, f := range tr.From {
			if !f.Valid() {
				t.Errorf("%s: invalid from state %q", tr.Trigger, f)
			}
		}
	}
	for _, s := range []matchbox.MachineState{matchbox.StateReady, matchbox.StateProvisioning, matchbox.StateProvisioned, matchbox.StateFailed} {
		if !reached[s] {
			t.Errorf("state %s is reached by no transition", s)
		}
	}
	for _, trig := range []Trigger{TriggerEnroll, TriggerProvision, TriggerBMCFailed, TriggerCallback, TriggerConfigFetched, TriggerTimeout, TriggerOperator} {
		From(trig) // panics when missing
	}
}

// counterValue reads a counter with one label value from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
