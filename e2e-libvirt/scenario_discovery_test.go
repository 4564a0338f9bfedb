package e2elibvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/hardware"
)

// discoveryVM is a machine of scenario 2, unknown to matchbox at start.
type discoveryVM struct {
	Spec vmSpec
	// Group is the group its hardware facts select; Hostname the host name
	// that group's first-boot config sets.
	Group, Hostname string
	// Auto: the group provisions machines as they enroll
	// (auto_provision); otherwise the test provisions through the API.
	Auto bool
	// BMCPort is its BMC's UDP port on the namespace's loopback.
	BMCPort int
}

// discoveryVMs differ in memory and disks (same vCPUs), so that their
// facts select different groups.
var discoveryVMs = []discoveryVM{
	{
		Spec:  vmSpec{Name: "small-e1000", Firmware: firmwareBIOS, NIC: "e1000", MemoryMiB: 1024, CPUs: 2, Disks: 1},
		Group: "small", Hostname: "small-node", Auto: true, BMCPort: 6230,
	},
	{
		Spec:  vmSpec{Name: "big-virtio", Firmware: firmwareBIOS, NIC: "virtio", MemoryMiB: 1536, CPUs: 2, Disks: 2},
		Group: "big", Hostname: "big-node", BMCPort: 6231,
	},
}

// discoveryGroups are the hardware-fact groups of scenario 2. A big
// machine matches both: "big" wins by priority.
var discoveryGroups = []map[string]any{
	{
		"id": "small", "name": "small machines", "profile": "small-os",
		"facts":          []string{"memory.bytes >= 900MiB", "cpu.threads >= 2", "disk.count >= 1"},
		"auto_provision": true,
		"metadata":       map[string]any{"hostname": "small-node", "role": "small"},
	},
	{
		"id": "big", "name": "big machines", "profile": "big-os", "priority": 10,
		"facts":    []string{"memory.bytes >= 1400MiB", "cpu.threads >= 2", "disk.count >= 2"},
		"metadata": map[string]any{"hostname": "big-node", "role": "big"},
	},
}

// Serial-console lines of scenario 2: the agent's log (slog text on the
// console) and SeaBIOS giving up.
const (
	markerInventory    = `msg="inventory reported"`
	markerNoBootDevice = "No bootable device"
)

// agentFailures end a discovery boot.
var agentFailures = []string{"matchbox refused the inventory", "reporting the inventory failed", "TESTOS: agent exited", "TESTOS: no DHCP lease"}

// TestDiscovery is scenario 2: two machines unknown to matchbox, powered
// on through their BMCs, boot the shipped discovery profile (default
// group); the agent reports their hardware and powers them off; their facts
// enroll them into different groups; one group provisions at once
// (auto_provision), the other machine is provisioned through the API
// (one-time PXE and power cycle); each boots its group's profile and
// fetches its first-boot config (provisioned); powered on again, each is
// given no network boot and ends in the firmware's "No bootable device".
func TestDiscovery(t *testing.T) {
	start := time.Now()
	l := newLab(t)
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	// The shipped discovery profile boots /assets/discovery/: the test
	// OS, whose /init runs the agent when matchbox.url= is given.
	mustCopy(t, tos.Kernel, filepath.Join(assets, "discovery", "vmlinuz"))
	mustCopy(t, tos.Initrd, filepath.Join(assets, "discovery", "initramfs.cpio.gz"))
	var vms []discoveryVM
	for i, vm := range discoveryVMs {
		vm.Spec.MAC = macFor(2, i)
		vm.Spec.Hostname = vm.Hostname
		vms = append(vms, vm)
	}
	dataDir := filepath.Join(l.Dir, "data")
	writeDiscoveryDataDir(t, dataDir, bootBase)
	keyFile := filepath.Join(l.Dir, "secret.key")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, keyFile, hex.EncodeToString(key)+"\n")

	_, help := buildMatchbox(t)
	dns := dnsmasqOptions{}
	if !hasTFTP(help) {
		dns.TFTPRoot = tftpRoot
	}
	l.startDnsmasq(t, "dnsmasq-ra", dns)
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{
		DHCPMode:  "authoritative",
		ExtraArgs: []string{"--secret-key-file", keyFile, "--bmc-timeout", "20s"},
	})
	t.Logf("set-up (namespace, VM driver, test OS, matchbox) took %.1fs", time.Since(start).Seconds())

	vmStart := time.Now()
	t.Cleanup(func() {
		// Runs after the parallel subtests.
		total := time.Since(start)
		t.Logf("scenario 2: VMs %.1fs, whole scenario %.1fs", time.Since(vmStart).Seconds(), total.Seconds())
		record("%-30s %-7s whole scenario %5.1fs (VMs %5.1fs)", "discovery", l.Driver.Name(), total.Seconds(), time.Since(vmStart).Seconds())
	})
	for _, vm := range vms {
		m := l.Driver.Define(t, vm.Spec)
		b := startBMCIn(t, l, m, l.NS, vm.BMCPort)
		t.Run(vm.Spec.Name, func(t *testing.T) {
			t.Parallel()
			d := &discoveryRun{t: t, l: l, srv: srv, m: m, b: b, vm: vm, spec: m.Spec(), id: strings.ReplaceAll(vm.Spec.MAC, ":", "-")}
			d.run()
		})
	}
}

// writeDiscoveryDataDir writes scenario 2's data directory: the shipped
// default group and discovery profile unchanged, the hardware-fact groups
// and their profiles (the test OS with a first-boot config).
func writeDiscoveryDataDir(t testing.TB, dir, base string) {
	t.Helper()
	root := repoRoot(t)
	mustCopy(t, filepath.Join(root, "profiles", "discovery.yaml"), filepath.Join(dir, "profiles", "discovery.yaml"))
	mustCopy(t, filepath.Join(root, "groups", "default.yaml"), filepath.Join(dir, "groups", "default.yaml"))
	for _, g := range discoveryGroups {
		id := g["id"].(string)
		profile := g["profile"].(string)
		writeJSON(t, filepath.Join(dir, "profiles", profile+".json"), map[string]any{
			"id":          profile,
			"name":        "test OS installed on " + id + " machines",
			"ignition_id": "installed.yaml",
			"generic_id":  "installed-done.txt",
			// The test OS's last fetch (generic, step=done) completes
			// provisioning: the opt-in for systems that do not call
			// their provisioned_url.
			"provisioned_by": "generic",
			"boot": map[string]any{
				"kernel": "/assets/testos/vmlinuz",
				"initrd": []string{"/assets/testos/initramfs.cpio.gz"},
				"args":   bootArgs(base),
			},
		})
		writeJSON(t, filepath.Join(dir, "groups", id+".json"), g)
	}
	mustWrite(t, filepath.Join(dir, "ignition", "installed.yaml"), ignitionTemplate)
	mustWrite(t, filepath.Join(dir, "generic", "installed-done.txt"), installedDone)
}

// installedDone is what the test OS fetches when it is done. The groups
// select by facts, not by MAC: as in matchbox v0.11, a selector's terms
// are template variables but query labels are only under .request.query;
// machine_id is matchbox's own variable.
const installedDone = "done {{.request.query.mac}} {{.machine_id}} {{.hostname}}\n"

// discoveryRun is one VM's way through scenario 2.
type discoveryRun struct {
	t     *testing.T
	l     *lab
	srv   *matchboxServer
	m     machine
	b     *vmBMC
	vm    discoveryVM
	spec  vmSpec
	id    string   // the machine id matchbox gives it: its MAC with dashes
	times []string // phase times, for the summary
	// bootOffset is the serial log's size at the first power-on.
	bootOffset int64
}

// phase logs and keeps the wall time of a phase.
func (d *discoveryRun) phase(name string, took time.Duration) {
	d.t.Logf("phase %-10s %5.1fs", name, took.Seconds())
	d.times = append(d.times, fmt.Sprintf("%s %5.1fs", name, took.Seconds()))
}

// fatalf fails the run with the machine's timeline and the serial tail.
func (d *discoveryRun) fatalf(format string, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := d.srv.EventsByID(ctx, d.id)
	tl := eventTypes(evs)
	if err != nil {
		tl = err.Error()
	}
	state := ""
	if m, err := d.srv.MachineByID(ctx, d.id); err == nil {
		state = fmt.Sprintf("%s (group %q)", m.State, m.Group)
	}
	d.t.Fatalf("VM %s: %s\nmachine %s state %s\ntimeline: %s\nBMC calls: %v\nlast serial lines (%s):\n%s",
		d.spec.Name, fmt.Sprintf(format, args...), d.id, state, tl, d.b.Events(), d.spec.SerialLog, tail(d.spec.SerialLog, 25))
}

func (d *discoveryRun) run() {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	begin := time.Now()
	d.discover(ctx)
	d.checkInventory(ctx)
	d.checkEnrollment(ctx)
	d.provision(ctx)
	d.bootDisk(ctx)
	d.t.Logf("VM %s: all phases %.1fs", d.spec.Name, time.Since(begin).Seconds())
	record("%-30s %-7s %s, total %5.1fs", "discovery/"+d.spec.Name, d.l.Driver.Name(), strings.Join(d.times, ", "), time.Since(begin).Seconds())
}

// discover powers the VM on through its BMC (ipmitool against ipmi_sim:
// matchbox knows nothing of it yet), declares its BMC to matchbox as soon
// as its first DHCP request made it a discovered machine, and follows the
// discovery boot until the agent reported the inventory.
func (d *discoveryRun) discover(ctx context.Context) {
	t := d.t
	if _, err := d.srv.MachineByID(ctx, d.id); !isNotFound(err) {
		d.fatalf("machine known to matchbox before its first boot (%v)", err)
	}
	offset := fileSize(d.spec.SerialLog)
	d.bootOffset = offset
	start := time.Now()
	for _, args := range [][]string{{"chassis", "bootdev", "pxe"}, {"chassis", "power", "on"}} {
		if err := ipmitoolSettled(ctx, t, d.b, args...); err != nil {
			d.fatalf("BMC: %v", err)
		}
	}
	// matchbox creates the machine at its first DHCP request; declare
	// the BMC then, well before the agent reports (auto_provision needs
	// it).
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := d.srv.MachineByID(ctx, d.id)
		if err == nil {
			break
		}
		if !isNotFound(err) || time.Now().After(deadline) {
			d.fatalf("machine %s not created by its network boot: %v", d.id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := time.Since(start)
	if err := d.srv.SetBMC(ctx, d.id, d.b); err != nil {
		d.fatalf("declare BMC: %v", err)
	}
	t.Logf("machine %s known %.1fs after power-on; BMC declared", d.id, seen.Seconds())
	bad := append(append([]string{}, bootFailures...), agentFailures...)
	want := []string{markerInventory}
	if d.vm.Auto {
		// Its BMC may cycle it into the provisioning boot before the
		// agent's log line reaches the console.
		want = append(want, markerConfig)
	}
	if _, _, err := waitConsole(ctx, d.m, d.spec.SerialLog, offset, want, bad, 15*time.Second); err != nil {
		d.fatalf("discovery boot: %v", err)
	}
	// The phase ends when matchbox stored the report.
	evs := d.events(ctx, "agent.inventory")
	d.phase("discovery", evs[lastOf(evs, "agent.inventory")].At.Sub(start))
	if !d.vm.Auto {
		// The agent powers the machine off (matchbox.after=poweroff).
		offCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := d.m.WaitOff(offCtx); err != nil {
			d.fatalf("agent did not power the machine off: %v", err)
		}
		t.Logf("discovery boot powered off %.1fs after power-on", time.Since(start).Seconds())
	}
}

// checkInventory compares the inventory matchbox stored with the VM's
// configuration.
func (d *discoveryRun) checkInventory(ctx context.Context) {
	t := d.t
	inv, err := d.srv.Inventory(ctx, d.id)
	if err != nil || inv == nil {
		d.fatalf("inventory: %v (nil: %v)", err, inv == nil)
	}
	var problems []string
	want := uint64(d.spec.memory()) << 20
	if diff := math.Abs(float64(inv.Memory.Bytes)-float64(want)) / float64(want); diff > 0.03 {
		problems = append(problems, fmt.Sprintf("memory %d bytes, VM has %d MiB (%.1f%% off)", inv.Memory.Bytes, d.spec.memory(), diff*100))
	}
	if inv.CPU.Threads != d.spec.cpus() {
		problems = append(problems, fmt.Sprintf("cpu.threads %d, VM has -smp %d", inv.CPU.Threads, d.spec.cpus()))
	}
	if len(inv.Disks) != d.spec.Disks {
		problems = append(problems, fmt.Sprintf("%d disks %v, VM has %d", len(inv.Disks), inv.Disks, d.spec.Disks))
	}
	for i, disk := range inv.Disks {
		if disk.SizeBytes != diskSizeBytes || disk.Serial != d.spec.diskSerial(i) {
			problems = append(problems, fmt.Sprintf("disk %s: %d bytes serial %q, want %d bytes serial %q", disk.Name, disk.SizeBytes, disk.Serial, diskSizeBytes, d.spec.diskSerial(i)))
		}
	}
	if !hasNIC(inv, d.spec.MAC) {
		problems = append(problems, fmt.Sprintf("no NIC with MAC %s in %+v", d.spec.MAC, inv.NICs))
	}
	if inv.System.UUID != d.spec.UUID {
		problems = append(problems, fmt.Sprintf("system.uuid %q, VM has %q", inv.System.UUID, d.spec.UUID))
	}
	if inv.System.BootMode != hardware.BootModeBIOS {
		problems = append(problems, fmt.Sprintf("boot mode %q, want bios", inv.System.BootMode))
	}
	if len(problems) > 0 {
		d.fatalf("inventory does not describe the VM:\n  %s", strings.Join(problems, "\n  "))
	}
	m, err := d.srv.MachineByID(ctx, d.id)
	if err != nil {
		d.fatalf("machine: %v", err)
	}
	if s := m.InventorySummary; s == nil || s.MemoryBytes != inv.Memory.Bytes || s.Disks != len(inv.Disks) || s.CPUThreads != inv.CPU.Threads {
		d.fatalf("inventory_summary %+v does not match the inventory", s)
	}
	t.Logf("inventory: %d MiB, %d threads (%s), %d disks, NIC %s, %s %s",
		inv.Memory.Bytes>>20, inv.CPU.Threads, inv.CPU.Model, len(inv.Disks), d.spec.MAC, inv.System.Vendor, inv.System.Product)
}

func hasNIC(inv *hardware.Inventory, mac string) bool {
	for _, n := range inv.NICs {
		if strings.EqualFold(n.MAC, mac) {
			return true
		}
	}
	return false
}

// checkEnrollment checks that the facts put the machine in its group:
// ready, or already provisioning for an auto_provision group.
func (d *discoveryRun) checkEnrollment(ctx context.Context) {
	m, err := d.srv.MachineByID(ctx, d.id)
	if err != nil {
		d.fatalf("machine: %v", err)
	}
	okStates := map[string]bool{"ready": true}
	if d.vm.Auto {
		okStates = map[string]bool{"provisioning": true, "provisioned": true}
	}
	if m.Group != d.vm.Group || !okStates[string(m.State)] {
		d.fatalf("enrolled as %s in group %q, want group %q in state %v", m.State, m.Group, d.vm.Group, keys(okStates))
	}
	evs := d.events(ctx, "machine.enrolled")
	steps := []eventStep{
		{Type: "dhcp.offer"},
		{Type: "http.ipxe", Detail: map[string]any{"group": "default", "profile": "discovery"}},
		{Type: "agent.inventory"},
		{Type: "machine.enrolled", Detail: map[string]any{"group": d.vm.Group, "state": "ready"}},
	}
	if _, miss := findInOrder(evs, steps); miss != nil {
		d.fatalf("discovery timeline lacks %s (in order %v): %s", miss, steps, eventTypes(evs))
	}
	if c, inv := lastOf(evs, "bmc.configured"), lastOf(evs, "agent.inventory"); c < 0 || c > inv {
		d.fatalf("BMC not declared before the inventory report: %s", eventTypes(evs))
	}
	d.t.Logf("enrolled: group %s, state %s", m.Group, m.State)
}

// provision provisions the machine (through the API unless its group
// did at enrollment) and follows the boot into its group's profile until
// the test OS fetched its config, reported done and powered off.
func (d *discoveryRun) provision(ctx context.Context) {
	t := d.t
	profile := d.vm.Group + "-os"
	offset := fileSize(d.spec.SerialLog)
	start := time.Now()
	if d.vm.Auto {
		// Already under way: the discovery boot printed no config marker.
		offset = d.bootOffset
		evs := d.events(ctx, "machine.provisioning")
		i := lastOf(evs, "machine.provisioning")
		start = evs[i].At
		t.Logf("auto_provision started %.1fs after enrollment", evs[i].At.Sub(evs[lastOf(evs, "machine.enrolled")].At).Seconds())
	} else {
		res, err := d.srv.Provision(ctx, d.id)
		if err != nil {
			d.fatalf("provision: %v", err)
		}
		t.Logf("POST provision: %s steps %v, power %s, %d ms", res.Requested, res.Steps, res.PowerState, res.DurationMS)
	}
	// The machine may be off a moment (powered off by its agent, then
	// cycled by its BMC).
	if _, _, err := waitConsole(ctx, d.m, d.spec.SerialLog, offset, []string{markerConfig}, bootFailures, 30*time.Second); err != nil {
		d.fatalf("provisioning boot: %v", err)
	}
	configAt := time.Since(start)
	host := markerHostname + d.vm.Hostname + "\n"
	for _, marker := range []string{host, markerDone} {
		if _, _, err := waitConsole(ctx, d.m, d.spec.SerialLog, offset, []string{marker}, nil, 0); err != nil {
			d.fatalf("provisioning boot: %v", err)
		}
	}
	offCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.m.WaitOff(offCtx); err != nil {
		d.fatalf("test OS did not power off: %v", err)
	}
	d.phase("provision", time.Since(start))
	t.Logf("config fetched %.1fs after provisioning started", configAt.Seconds())
	d.waitState(ctx, "provisioned")
	evs := d.events(ctx, "http.generic")
	steps := []eventStep{
		{Type: "machine.provisioning"},
		{Type: "bmc.provision_boot"},
		{Type: "dhcp.ack"},
		{Type: "http.ipxe", Detail: map[string]any{"group": d.vm.Group, "profile": profile}},
		{Type: "http.ignition", Detail: map[string]any{"group": d.vm.Group, "profile": profile, "status": 200}},
		{Type: "http.generic", Detail: map[string]any{"group": d.vm.Group, "profile": profile, "status": 200}},
	}
	at, miss := findInOrder(evs, steps)
	if miss != nil {
		d.fatalf("provisioning timeline lacks %s (in order %v): %s", miss, steps, eventTypes(evs))
	}
	if p := lastOf(evs, "machine.provisioned"); p < at[0] {
		d.fatalf("no machine.provisioned after machine.provisioning: %s", eventTypes(evs))
	}
	if e := evs[at[1]]; e.Detail["error"] != nil {
		d.fatalf("bmc.provision_boot failed: %v", e.Detail)
	}
	// "power 0, power 1": the BMC cycled a running machine; "power 1"
	// alone: the machine was off and was powered on.
	t.Logf("bmc.provision_boot %.1fs after machine.provisioning: %v; BMC calls so far %v",
		evs[at[1]].At.Sub(evs[at[0]].At).Seconds(), evs[at[1]].Detail, d.b.Events())
}

// bootDisk powers the provisioned machine on again through matchbox (its
// BMC): DHCP gives it no boot file (or /ipxe tells iPXE to exit), so the
// diskless firmware finds nothing to boot; no config is fetched again.
func (d *discoveryRun) bootDisk(ctx context.Context) {
	t := d.t
	before, err := d.srv.EventsByID(ctx, d.id)
	if err != nil {
		d.fatalf("timeline: %v", err)
	}
	// Events written since: the timeline is ordered by time, so the last
	// written is the greatest id, not necessarily the last listed.
	lastID := int64(0)
	for _, e := range before {
		lastID = max(lastID, e.ID)
	}
	offset := fileSize(d.spec.SerialLog)
	start := time.Now()
	res, err := d.srv.Power(ctx, d.id, "on")
	if err != nil {
		d.fatalf("power on: %v", err)
	}
	t.Logf("POST power on: steps %v, power %s", res.Steps, res.PowerState)
	_, _, err = waitConsole(ctx, d.m, d.spec.SerialLog, offset, []string{markerNoBootDevice}, []string{"TESTOS:"}, 15*time.Second)
	if err != nil {
		d.fatalf("boot after provisioning: %v", err)
	}
	d.phase("disk boot", time.Since(start))
	if _, err := d.srv.Power(ctx, d.id, "off"); err != nil {
		d.fatalf("power off: %v", err)
	}
	offCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.m.WaitOff(offCtx); err != nil {
		d.fatalf("power off: %v", err)
	}
	// The boot events are written in batches: wait for the DHCP answer.
	var after []event
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := d.srv.EventsByID(ctx, d.id)
		if err != nil {
			d.fatalf("timeline: %v", err)
		}
		after = after[:0]
		for _, e := range evs {
			if e.ID > lastID {
				after = append(after, e)
			}
		}
		if lastOf(after, "dhcp.ack") >= 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	acks, diskAnswers := 0, 0
	for _, e := range after {
		switch {
		case e.Type == "dhcp.ack":
			acks++
			if bf, ok := e.Detail["boot_file"]; ok {
				d.fatalf("DHCP gave the provisioned machine boot file %v: %s", bf, eventTypes(after))
			}
		case e.Type == "http.ipxe.boot_disk":
			diskAnswers++
		case e.Type == "http.ignition", e.Type == "http.generic", e.Type == "http.ipxe", e.Type == "http.boot_ipxe":
			d.fatalf("provisioned machine was served %s again: %s", e.Type, eventTypes(after))
		}
	}
	if acks == 0 && diskAnswers == 0 {
		d.fatalf("no DHCP answer without boot file nor http.ipxe.boot_disk after power-on: %s", eventTypes(after))
	}
	d.waitState(ctx, "provisioned")
	t.Logf("boot after provisioning: %d DHCP answers without boot file, %d iPXE exit answers; timeline: %s", acks, diskAnswers, eventTypes(after))
}

// events returns the machine's timeline once it holds an event of type
// typ (the boot events are written in batches).
func (d *discoveryRun) events(ctx context.Context, typ string) []event {
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := d.srv.EventsByID(ctx, d.id)
		if err != nil {
			d.fatalf("timeline: %v", err)
		}
		if lastOf(evs, typ) >= 0 {
			return evs
		}
		if time.Now().After(deadline) {
			d.fatalf("no %s event", typ)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitState waits (briefly) for the machine to reach state.
func (d *discoveryRun) waitState(ctx context.Context, state string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := d.srv.MachineByID(ctx, d.id)
		if err == nil && string(m.State) == state {
			return
		}
		if time.Now().After(deadline) {
			d.fatalf("state %s, want %s (%v)", m.State, state, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
