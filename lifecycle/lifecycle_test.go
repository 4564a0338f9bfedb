package lifecycle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"matchbox/agent/token"
	"matchbox/bmc"
	"matchbox/bmc/ipmisim"
	"matchbox/bmc/secret"
	"matchbox/boothttp"
	"matchbox/hardware"
	"matchbox/hardware/facts"
	"matchbox/matchbox"
	"matchbox/store"
)

var agentKey = bytes.Repeat([]byte{7}, 32)

func parseFact(expr string) (matchbox.FactTerm, error) {
	t, err := facts.Parse(expr)
	if err != nil {
		return nil, err
	}
	return t, nil
}

type fixture struct {
	st   *store.Store
	svc  *Service
	srv  *httptest.Server
	path string
	key  *secret.Key
}

// storageButane is an installed system's config that calls its
// completion callback once, on its first boot.
const storageButane = `variant: fcos
version: 1.5.0
systemd:
  units:
    - name: matchbox-provisioned.service
      enabled: true
      contents: |
        [Unit]
        ConditionFirstBoot=yes
        After=network-online.target
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/curl -fsS -X POST "{{.provisioned_url}}"
        [Install]
        WantedBy=multi-user.target
`

// callbackURL returns the completion callback URL an Ignition config
// carries in its first unit.
func callbackURL(t *testing.T, ign string) string {
	t.Helper()
	var cfg struct {
		Systemd struct {
			Units []struct{ Contents string }
		}
	}
	if err := json.Unmarshal([]byte(ign), &cfg); err != nil || len(cfg.Systemd.Units) == 0 {
		t.Fatalf("ignition %q: %v", ign, err)
	}
	m := regexp.MustCompile(`"(http://[^"]+)"`).FindStringSubmatch(cfg.Systemd.Units[0].Contents)
	if m == nil {
		t.Fatalf("no callback URL in %q", cfg.Systemd.Units[0].Contents)
	}
	return m[1]
}

func newFixture(t *testing.T, autoProvision bool) *fixture {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "matchbox.db")
	st, err := store.Open(ctx, store.Config{Path: path, ParseFact: parseFact})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	objs := []*store.Object{
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "discovery", Boot: matchbox.Boot{Kernel: "/assets/discovery/vmlinuz", Args: []string{"matchbox.id={{.machine_id}}", "matchbox.token={{.agent_token}}"}}}},
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "storage", Boot: matchbox.Boot{Kernel: "/assets/storage/vmlinuz"}, IgnitionID: "storage.yaml", ProvisioningTimeout: "10m"}},
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "compute", Boot: matchbox.Boot{Kernel: "/assets/compute/vmlinuz"}}},
		{Kind: matchbox.TemplateIgnition, Template: &matchbox.Template{Kind: matchbox.TemplateIgnition, Name: "storage.yaml", Content: storageButane}},
		{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "default", Profile: "discovery"}},
		{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "storage", Profile: "storage", Facts: []string{"disk.count >= 4"}, AutoProvision: autoProvision}},
		{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "compute", Profile: "compute", Facts: []string{"cpu.cores >= 32", "memory.bytes >= 256GiB"}}},
	}
	if _, _, err := st.Import(ctx, "test", objs); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, secret.KeySize)
	rand.Read(raw)
	key, err := secret.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, BMC: bmc.New(bmc.Config{Timeout: 15 * time.Second, Retries: 1}), Secrets: key, AgentKey: agentKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	boot, _ := boothttp.New(boothttp.Config{
		Snapshot:  st.Snapshot,
		Machines:  boothttp.IndexLookup{Index: st},
		Lifecycle: svc,
	})
	srv := httptest.NewServer(boot.Handler())
	t.Cleanup(srv.Close)
	return &fixture{st: st, svc: svc, srv: srv, path: path, key: key}
}

func storageInventory(mac string, disks int) hardware.Inventory {
	inv := hardware.Inventory{System: hardware.System{Vendor: "Dell Inc.", Serial: "SN-" + mac[len(mac)-2:]}}
	inv.CPU.Cores, inv.CPU.Threads, inv.CPU.Arch = 8, 16, "x86_64"
	inv.Memory.Bytes = 64 << 30
	for i := 0; i < disks; i++ {
		inv.Disks = append(inv.Disks, hardware.Disk{Name: "sd" + string(rune('a'+i)), SizeBytes: 4 << 40, Rotational: true})
	}
	inv.NICs = []hardware.NIC{{Name: "eno1", MAC: mac, Link: true, SpeedMbps: 10000}}
	return inv
}

// report reports inv for machine id as the agent's endpoint does.
func (f *fixture) report(t *testing.T, id string, inv hardware.Inventory) Enrollment {
	t.Helper()
	e, err := f.svc.ReportInventory(context.Background(), id, inv)
	if err != nil {
		t.Fatalf("report of %s: %v", id, err)
	}
	return e
}

func (f *fixture) post(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (f *fixture) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

func TestDiscoveryInventoryEnrollment(t *testing.T) {
	f := newFixture(t, false)
	mac := "52:54:00:00:00:0a"
	id := store.MachineIDFromMAC(mac)
	// The discovery profile's kernel args carry the machine's id and token.
	script := f.get(t, "/ipxe?mac="+mac)
	if !strings.Contains(script, "matchbox.id="+id) || !strings.Contains(script, "matchbox.token=v1.") {
		t.Fatalf("discovery script: %q", script)
	}
	tok := script[strings.Index(script, "matchbox.token=")+len("matchbox.token="):]
	tok = strings.Fields(tok)[0]
	if err := token.Verify(agentKey, id, tok); err != nil {
		t.Fatalf("the script's token does not verify for %s: %v", id, err)
	}

	// A good report enrolls the machine by its facts.
	e := f.report(t, id, storageInventory(mac, 6))
	if e.State != matchbox.StateReady || e.Group != "storage" || !e.Changed {
		t.Fatalf("report: %+v", e)
	}
	sum, _ := f.st.LookupMachine(mac, "")
	if sum.Inventory == nil || len(sum.Inventory.Disks) != 6 || sum.State != matchbox.StateReady {
		t.Fatalf("stored machine: %+v", sum)
	}
	// Now /ipxe serves the storage profile.
	if script := f.get(t, "/ipxe?mac="+mac); !strings.Contains(script, "/assets/storage/vmlinuz") {
		t.Fatalf("enrolled machine got %q", script)
	}
	// Same facts again: no history entry; a changed disk shows in the history.
	f.report(t, id, storageInventory(mac, 6))
	if e := f.report(t, id, storageInventory(mac, 5)); !e.Changed {
		t.Fatalf("changed report: %+v", e)
	}
	hist, err := f.st.InventoryHistory(context.Background(), id)
	if err != nil || len(hist) != 2 || len(hist[0].Inventory.Disks) != 6 || len(hist[1].Inventory.Disks) != 5 {
		t.Fatalf("history: %d entries, %v", len(hist), err)
	}
	evs, _ := f.st.Events(context.Background(), id, store.EventFilter{Type: "machine."})
	if len(evs) == 0 || evs[0].Type != EventEnrolled || evs[0].Detail["group"] != "storage" {
		t.Fatalf("events: %+v", evs)
	}
	// A small machine matches only the default group: it stays discovered.
	small := "52:54:00:00:00:0c"
	smallID := store.MachineIDFromMAC(small)
	if e := f.report(t, smallID, storageInventory(small, 1)); e.State != matchbox.StateDiscovered || e.Group != "" {
		t.Fatalf("small machine: %+v", e)
	}
}

func TestBMCCredentialsSealed(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	id := "m1"
	if _, err := f.st.PutMachine(ctx, &matchbox.Machine{ID: id}, 0); err != nil {
		t.Fatal(err)
	}
	const password = "s3cr3t-Passw0rd-XYZ"
	if err := f.svc.SetBMC(ctx, id, bmc.Endpoint{Address: "127.0.0.1", Port: 623, Driver: "ipmi", Username: "admin", Password: password}); err != nil {
		t.Fatal(err)
	}
	view, creds, err := f.svc.BMC(ctx, id)
	if err != nil || !creds || view.Address != "127.0.0.1" || view.Username != "" || view.Password != "" {
		t.Fatalf("view: %+v %v %v", view, creds, err)
	}
	b, _ := json.Marshal(view)
	if strings.Contains(string(b), password) || strings.Contains(string(b), "admin") {
		t.Fatalf("view leaks credentials: %s", b)
	}
	f.st.Close()
	// The password is not in the database file, the WAL or its index.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(f.path + suffix)
		if err != nil {
			continue
		}
		if bytes.Contains(data, []byte(password)) {
			t.Fatalf("plaintext password found in %s", f.path+suffix)
		}
	}
	// A service with another key cannot open them, and says so.
	st2, err := store.Open(ctx, store.Config{Path: f.path, ParseFact: parseFact})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	raw := make([]byte, secret.KeySize)
	rand.Read(raw)
	other, _ := secret.NewKey(raw)
	svc2, _ := New(Config{Store: st2, BMC: bmc.New(bmc.Config{}), Secrets: other})
	if _, err := svc2.endpoint(ctx, id); err == nil || !strings.Contains(err.Error(), "wrong secret key") {
		t.Fatalf("wrong key: %v", err)
	}
	// Without a key, credentials are refused.
	svc3, _ := New(Config{Store: st2})
	if err := svc3.SetBMC(ctx, id, bmc.Endpoint{Address: "h", Username: "u", Password: "p"}); err != ErrNoSecretKey {
		t.Fatalf("no key: %v", err)
	}
}

// TestProvisionAgainstIPMISim drives the whole provisioning state machine
// through a real IPMI peer: enrolled machine → provision (one-time PXE +
// power on) → profile served → config fetched → provisioned → next boot is
// told to boot from disk; a new provision serves the profile again.
func TestProvisionAgainstIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Options{})
	f := newFixture(t, true)
	ctx := context.Background()
	mac := "52:54:00:00:00:0d"
	id := store.MachineIDFromMAC(mac)
	if _, err := f.st.PutMachine(ctx, &matchbox.Machine{ID: id, MACs: []string{mac}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetBMC(ctx, id, bmc.Endpoint{Address: sim.Host, Port: sim.Port, Driver: "ipmi", CipherSuite: sim.CipherSuite, Username: sim.Username, Password: sim.Password}); err != nil {
		t.Fatal(err)
	}
	// auto_provision on the storage group: the report starts provisioning.
	if e := f.report(t, id, storageInventory(mac, 4)); !e.Provisioning {
		t.Fatalf("report: %+v", e)
	}
	f.svc.Wait()
	sum, _ := f.st.LookupMachine(mac, "")
	if sum.State != matchbox.StateProvisioning {
		t.Fatalf("state after provision: %s", sum.State)
	}
	if !sim.Power(t) || sim.Boot(t) != "pxe" {
		t.Fatalf("simulator: power=%v boot=%q", sim.Power(t), sim.Boot(t))
	}
	if script := f.get(t, "/ipxe?mac="+mac); !strings.Contains(script, "/assets/storage/vmlinuz") {
		t.Fatalf("provisioning machine got %q", script)
	}
	cfg := f.get(t, "/ignition?mac="+mac)
	if !strings.Contains(cfg, `"version":"3.4.0"`) {
		t.Fatalf("ignition: %q", cfg)
	}
	// Fetching the config is not installing it: still provisioning.
	sum, _ = f.st.LookupMachine(mac, "")
	if sum.State != matchbox.StateProvisioning {
		t.Fatalf("state after config fetch: %s", sum.State)
	}
	// The installed system calls back: provisioned, once.
	cb := callbackURL(t, cfg)
	if !strings.HasPrefix(cb, f.srv.URL+"/provisioned?") {
		t.Fatalf("callback %q is not on the boot server %s", cb, f.srv.URL)
	}
	if code := f.post(t, cb); code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	sum, _ = f.st.LookupMachine(mac, "")
	if sum.State != matchbox.StateProvisioned {
		t.Fatalf("state after callback: %s", sum.State)
	}
	if code := f.post(t, cb); code != http.StatusConflict {
		t.Fatalf("second callback: %d, want 409", code)
	}
	if script := f.get(t, "/ipxe?mac="+mac); script != "#!ipxe\nexit\n" {
		t.Fatalf("provisioned machine got %q", script)
	}
	// Provision again: the machine is cycled and served its profile once more.
	sim.ResetEvents(t)
	if _, err := f.svc.Provision(ctx, id); err != nil {
		t.Fatal(err)
	}
	if script := f.get(t, "/ipxe?mac="+mac); !strings.Contains(script, "/assets/storage/vmlinuz") {
		t.Fatalf("re-provisioning machine got %q", script)
	}
	if evs := strings.Join(sim.Events(t), ","); !strings.Contains(evs, "boot pxe") {
		t.Fatalf("simulator events: %s", evs)
	}
	// Power status and off through the service.
	if st, err := f.svc.PowerStatus(ctx, id); err != nil || st != bmc.PowerOn {
		t.Fatalf("status: %s %v", st, err)
	}
	if _, err := f.svc.SetPower(ctx, id, bmc.ActionOff); err != nil || sim.Power(t) {
		t.Fatalf("off: %v power=%v", err, sim.Power(t))
	}
	evs, _ := f.st.Events(ctx, id, store.EventFilter{})
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	joined := strings.Join(types, " ")
	for _, want := range []string{"agent.inventory", "machine.enrolled", "machine.provisioning", "bmc.provision_boot", "machine.provisioned", "bmc.power"} {
		if !strings.Contains(joined, want) {
			t.Errorf("timeline lacks %s: %s", want, joined)
		}
	}
	// A BMC failure marks the machine failed.
	if err := f.svc.SetBMC(ctx, id, bmc.Endpoint{Address: "127.0.0.1", Port: 1, Driver: "ipmi", CipherSuite: "3", Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	svcFast, _ := New(Config{Store: f.st, BMC: bmc.New(bmc.Config{Timeout: 2 * time.Second, Retries: 0}), Secrets: f.key})
	if _, err := svcFast.Provision(ctx, id); err == nil {
		t.Fatal("provision through an unreachable BMC succeeded")
	}
	if sum, _ := f.st.LookupMachine(mac, ""); sum.State != matchbox.StateFailed {
		t.Fatalf("state after failed provision: %s", sum.State)
	}
}
