package ui_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"matchbox/bmc"
	"matchbox/bmc/ipmisim"
	"matchbox/bmc/secret"
	"matchbox/lifecycle"
	"matchbox/matchbox"
	"matchbox/store"
)

// bmcConsole is a console with tokens and a lifecycle whose BMC client
// talks to a real ipmi_sim.
func bmcConsole(t *testing.T) (*console, *ipmisim.Sim) {
	t.Helper()
	sim := ipmisim.Start(t, ipmisim.Options{Username: "operator7", Password: "Sim-Passw0rd-9f3a"})
	c := newConsoleWith(t, true, func(st *store.Store) *lifecycle.Service {
		raw := make([]byte, secret.KeySize)
		rand.Read(raw)
		key, err := secret.NewKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		lc, err := lifecycle.New(lifecycle.Config{Store: st, BMC: bmc.New(bmc.Config{Timeout: 15 * time.Second}), Secrets: key})
		if err != nil {
			t.Fatal(err)
		}
		return lc
	})
	return c, sim
}

// setSimBMC declares sim as the BMC of machine id.
func (c *console) setSimBMC(t *testing.T, id string, sim *ipmisim.Sim) {
	t.Helper()
	if err := c.lifecycle.SetBMC(context.Background(), id, bmc.Endpoint{Address: sim.Host, Port: sim.Port, Driver: "ipmi", CipherSuite: sim.CipherSuite, Username: sim.Username, Password: sim.Password}); err != nil {
		t.Fatal(err)
	}
}

// machineState returns a stored machine's state and labels.
func (c *console) machineState(t *testing.T, id string) (matchbox.MachineState, map[string]string) {
	t.Helper()
	m, _, err := c.store.Machine(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return m.State, m.Labels
}

// TestActions posts every console action at the HTTP level against a real
// ipmi_sim: a reader sees no action control and every post of theirs is
// refused with 403, changing nothing in the store or at the BMC; the admin's
// posts act through the API's write paths, a bulk provisioning only after a
// confirmation naming how many machines and which.
func TestActions(t *testing.T) {
	c, sim := bmcConsole(t)
	for _, m := range []struct {
		id    string
		batch string
	}{{"n1", ""}, {"n2", "b1"}, {"n3", "b1"}} {
		labels := map[string]string{"rack": "r1"}
		if m.batch != "" {
			labels["batch"] = m.batch
		}
		c.putMachine(t, &matchbox.Machine{ID: m.id, MACs: []string{"52:54:00:00:02:0" + m.id[1:]}, State: matchbox.StateReady, Labels: labels})
		c.setSimBMC(t, m.id, sim)
	}
	for i := range 12 {
		c.putMachine(t, &matchbox.Machine{ID: fmt.Sprintf("big%02d", i), State: matchbox.StateReady, Labels: map[string]string{"batch": "big"}})
	}

	type action struct {
		name, path string
		form       url.Values
	}
	actions := []action{
		{"provision", "/ui/machines/n1/provision", nil},
		{"power on", "/ui/machines/n1/power", url.Values{"action": {"on"}}},
		{"power off", "/ui/machines/n1/power", url.Values{"action": {"off"}}},
		{"power cycle", "/ui/machines/n1/power", url.Values{"action": {"cycle"}}},
		{"power status", "/ui/machines/n1/power", url.Values{"action": {"status"}}},
		{"boot device", "/ui/machines/n1/bootdevice", url.Values{"device": {"disk"}}},
		{"labels", "/ui/machines/n1/labels", url.Values{"labels": {"rack=r2"}}},
		{"state", "/ui/machines/n1/state", url.Values{"state": {"failed"}}},
		{"provision selector", "/ui/provision", url.Values{"labels": {"batch=b1"}, "confirm": {"yes"}, "count": {"2"}}},
	}
	post := func(cl *http.Client, csrf string, a action) (int, string, http.Header) {
		t.Helper()
		form := url.Values{"csrf": {csrf}}
		for k, v := range a.form {
			form[k] = v
		}
		return do(t, cl, "POST", c.srv.URL+a.path, form)
	}

	// The reader: no controls, and 403 on every post.
	before := storeState(t, c.store)
	reader, readCSRF := c.login(t, readToken)
	for _, path := range []string{"/ui/?labels=batch%3Db1", "/ui/machines/n1", "/ui/groups"} {
		_, page, _ := do(t, reader, "GET", c.srv.URL+path, nil)
		if n := strings.Count(page, `method="post"`) - strings.Count(page, `action="/ui/logout"`); n != 0 {
			t.Errorf("the reader's %s has %d action forms", path, n)
		}
	}
	// The console refuses them itself, before any call to the API: its
	// own answer, and no API request made (were the console to leave the
	// check to the API, the API's 403 would come back with its message).
	calls := c.apiCalls.Load()
	for _, a := range actions {
		if status, body, _ := post(reader, readCSRF, a); status != http.StatusForbidden || strings.TrimSpace(body) != "role read may not act" {
			t.Errorf("reader's %s: status %d %q, want 403 and the console's refusal", a.name, status, body)
		}
	}
	if n := c.apiCalls.Load() - calls; n != 0 {
		t.Errorf("the reader's refused actions made %d API calls, want none", n)
	}
	if after := storeState(t, c.store); after != before {
		t.Fatalf("the reader's refused actions changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if evs := sim.Events(t); len(evs) != 0 {
		t.Fatalf("the reader's refused actions reached the BMC: %v", evs)
	}

	// The admin: each action through the API, checked at the store and
	// the BMC.
	admin, csrf := c.login(t, adminToken)
	redirectMsg := func(a action, want string) {
		t.Helper()
		status, body, h := post(admin, csrf, a)
		loc, _ := url.Parse(h.Get("Location"))
		if status != http.StatusSeeOther || loc == nil || !strings.Contains(loc.Query().Get("msg"), want) {
			t.Fatalf("admin's %s: status %d to %q (%q), want a redirect saying %q", a.name, status, h.Get("Location"), body, want)
		}
	}
	redirectMsg(action{"boot device", "/ui/machines/n1/bootdevice", url.Values{"device": {"pxe"}}}, "Next boot from pxe")
	if got := sim.Boot(t); got != "pxe" {
		t.Errorf("BMC boot device after the admin's boot device action: %q, want pxe", got)
	}
	redirectMsg(actions[5], "Next boot from disk")
	if got := sim.Boot(t); got != "default" { // ipmi_sim names the disk selector "default"
		t.Errorf("BMC boot device after the admin's boot device action: %q, want default (disk)", got)
	}
	redirectMsg(actions[1], "Power on sent")
	if !sim.Power(t) {
		t.Errorf("BMC power after power on: off")
	}
	redirectMsg(actions[4], "Power is on")
	redirectMsg(actions[2], "Power off sent")
	if sim.Power(t) {
		t.Errorf("BMC power after power off: on")
	}
	redirectMsg(actions[3], "Power cycle sent")
	redirectMsg(actions[0], "Provisioning started")
	if st, _ := c.machineState(t, "n1"); st != matchbox.StateProvisioning {
		t.Errorf("n1 after provision: %s, want provisioning", st)
	}
	if got := sim.Boot(t); got != "pxe" {
		t.Errorf("BMC boot device after provisioning: %q, want pxe", got)
	}
	redirectMsg(actions[6], "Labels set")
	if _, labels := c.machineState(t, "n1"); labels["rack"] != "r2" || len(labels) != 1 {
		t.Errorf("n1's labels: %v, want rack=r2 only", labels)
	}
	redirectMsg(actions[7], "State set to failed")
	if st, _ := c.machineState(t, "n1"); st != matchbox.StateFailed {
		t.Errorf("n1 after set state: %s, want failed", st)
	}
	evs, err := c.store.Events(context.Background(), "n1", store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	for _, want := range []string{"bmc.boot_device", lifecycle.EventProvisioning} {
		if !strings.Contains(strings.Join(types, ","), want) {
			t.Errorf("n1's timeline %v lacks %s: the actions did not take the API's write paths", types, want)
		}
	}

	// Bulk provisioning: a confirmation naming how many machines and
	// which, first; a stale count asks again; then the machines go.
	status, page, _ := post(admin, csrf, action{"ask", "/ui/provision", url.Values{"labels": {"batch=big"}}})
	if status != http.StatusOK || !strings.Contains(page, `<strong id="confirm-count">12 machines</strong>`) ||
		!strings.Contains(page, `<a href="/ui/machines/big09">big09</a>`) || strings.Contains(page, "big10</a>") || !strings.Contains(page, "and 2 more") {
		t.Fatalf("confirmation for 12 machines: status %d\n%s", status, page)
	}
	status, page, _ = post(admin, csrf, action{"ask", "/ui/provision", url.Values{"labels": {"batch=b1"}}})
	if status != http.StatusOK || !strings.Contains(page, `<strong id="confirm-count">2 machines</strong>`) || !strings.Contains(page, `>n2</a>`) || !strings.Contains(page, `>n3</a>`) {
		t.Fatalf("confirmation for batch=b1: status %d\n%s", status, page)
	}
	for _, id := range []string{"n2", "n3"} {
		if st, _ := c.machineState(t, id); st != matchbox.StateReady {
			t.Fatalf("%s is %s after the confirmation page alone", id, st)
		}
	}
	status, page, _ = post(admin, csrf, action{"stale", "/ui/provision", url.Values{"labels": {"batch=b1"}, "confirm": {"yes"}, "count": {"3"}}})
	if status != http.StatusOK || !strings.Contains(page, "The selection changed") {
		t.Fatalf("a stale count: status %d\n%s", status, page)
	}
	if st, _ := c.machineState(t, "n2"); st != matchbox.StateReady {
		t.Fatalf("n2 is %s after a stale confirmation", st)
	}
	redirectMsg(actions[8], "Provisioning 2 machines: 2 started, 0 failed")
	for _, id := range []string{"n2", "n3"} {
		if st, _ := c.machineState(t, id); st != matchbox.StateProvisioning {
			t.Errorf("%s after bulk provisioning: %s, want provisioning", id, st)
		}
	}
}
