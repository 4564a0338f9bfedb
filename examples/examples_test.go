package examples

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"matchbox/boothttp"
	"matchbox/hardware"
	"matchbox/hardware/facts"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/matchbox/ignition"
)

// fakeMachines is what matchbox knows of machines: their inventories, by MAC.
type fakeMachines map[string]*hardware.Inventory

func (f fakeMachines) LookupMachine(_ context.Context, mac, _ string) (boothttp.MachineView, bool) {
	inv, ok := f[mac]
	if !ok {
		return boothttp.MachineView{}, false
	}
	return boothttp.MachineView{ID: strings.ReplaceAll(mac, ":", "-"), State: matchbox.StateReady, Inventory: inv}, true
}

// agentVars stands in for the lifecycle of matchbox serve: it hands the
// discovery profile the agent's variables.
type agentVars struct{}

func (agentVars) TemplateVars(_ context.Context, id string, _ matchbox.MachineState, mac, host string, _ func(string) bool) map[string]any {
	return map[string]any{
		"machine_id":      strings.ReplaceAll(mac, ":", "-"),
		"agent_token":     "test-token",
		"matchbox_url":    "http://" + host,
		"provisioned_url": "http://" + host + "/provisioned?machine=" + strings.ReplaceAll(mac, ":", "-") + "&token=test",
	}
}

func (agentVars) Served(context.Context, string, matchbox.MachineState, string, *matchbox.Profile) {}

func (agentVars) Complete(context.Context, string, string) error { return nil }

// example is a loaded example data directory.
type example struct {
	snap *matchbox.Snapshot
	h    http.Handler
	// rendered records the Ignition templates served, by name.
	rendered map[string]bool
}

// readDir reads the data directory dir and builds its snapshot, failing
// the test on a bad file or a catalog Build refuses.
func readDir(t *testing.T, dir string) (*datadir.Content, matchbox.Catalog, *matchbox.Snapshot) {
	t.Helper()
	c, err := datadir.Read(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	cat := c.Catalog()
	snap, err := matchbox.Build(cat, facts.ParseFact)
	if err != nil {
		t.Fatalf("build %s: %v", dir, err)
	}
	return c, cat, snap
}

// load reads, builds and serves an example directory.
func load(t *testing.T, dir string, machines fakeMachines) *example {
	t.Helper()
	c, cat, snap := readDir(t, dir)
	if len(c.Warnings) > 0 {
		t.Errorf("%s: warnings: %v", dir, c.Warnings)
	}
	for _, e := range c.Templates {
		if e.Value.Kind == matchbox.TemplateIgnition && ignition.IsIgnitionName(e.Value.Name) {
			if err := ignition.Validate([]byte(e.Value.Content)); err != nil {
				t.Errorf("%s: %v", e.File, err)
			}
		}
	}
	if len(cat.Profiles) == 0 || len(cat.Groups) == 0 {
		t.Fatalf("%s: no profiles or no groups", dir)
	}
	if w := snap.Warnings(); len(w) > 0 {
		t.Errorf("%s: groups that can tie: %v", dir, w)
	}
	cfg := boothttp.Config{Snapshot: func() *matchbox.Snapshot { return snap }, Lifecycle: agentVars{}}
	if machines != nil {
		cfg.Machines = machines
	}
	srv, err := boothttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ex := &example{snap: snap, h: srv.Handler(), rendered: map[string]bool{}}
	t.Cleanup(func() {
		// Every Butane template must have been rendered (and so
		// translated and validated) for some machine.
		for _, tmpl := range cat.Templates {
			if tmpl.Kind == matchbox.TemplateIgnition && !ignition.IsIgnitionName(tmpl.Name) && !ex.rendered[tmpl.Name] {
				t.Errorf("%s: Butane template %s was rendered for no machine", dir, tmpl.Name)
			}
		}
	})
	return ex
}

// get answers target with the example's boot endpoints and fails unless
// the status is 200.
func (ex *example) get(t *testing.T, target string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = "matchbox.example.com:8080"
	w := httptest.NewRecorder()
	ex.h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body.String())
	}
	return w.Body.String()
}

// selected returns the group the labels of query select.
func (ex *example) selected(t *testing.T, query string, inv *hardware.Inventory) string {
	t.Helper()
	if _, err := url.ParseQuery(query); err != nil {
		t.Fatal(err)
	}
	labels, err := matchbox.LabelsFromRawQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ex.snap.Select(labels, inv)
	if err != nil {
		t.Fatalf("select %s: %v", query, err)
	}
	return m.Group.ID
}

// config is the part of an Ignition config the examples are checked on.
type config struct {
	Ignition struct{ Version string }
	Passwd   struct {
		Users []struct {
			Name              string
			SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
		}
	}
	Storage struct {
		Files []struct {
			Path     string
			Contents struct {
				Source      string
				Compression string
			}
		}
	}
	Systemd struct {
		Units []struct {
			Name     string
			Enabled  *bool
			Mask     *bool
			Contents string
			Dropins  []struct{ Name, Contents string }
		}
	}
}

// ignitionFor fetches, validates and decodes the Ignition config of query,
// recording which template served it.
func (ex *example) ignitionFor(t *testing.T, query string, inv *hardware.Inventory) config {
	t.Helper()
	body := ex.get(t, "/ignition?"+query)
	if err := ignition.Validate([]byte(body)); err != nil {
		t.Fatalf("/ignition?%s: %v", query, err)
	}
	labels, _ := matchbox.LabelsFromRawQuery(query)
	if m, err := ex.snap.Select(labels, inv); err == nil {
		ex.rendered[m.Profile.IgnitionID] = true
	}
	var c config
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("/ignition?%s: %v", query, err)
	}
	return c
}

// file returns the decoded contents of the file at p.
func (c config) file(t *testing.T, p string) string {
	t.Helper()
	for _, f := range c.Storage.Files {
		if f.Path != p {
			continue
		}
		src := f.Contents.Source
		comma := strings.IndexByte(src, ',')
		if !strings.HasPrefix(src, "data:") || comma < 0 {
			t.Fatalf("%s: not a data URL: %q", p, src)
		}
		var data []byte
		if strings.HasSuffix(src[:comma], ";base64") {
			b, err := base64.StdEncoding.DecodeString(src[comma+1:])
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			data = b
		} else {
			s, err := url.PathUnescape(src[comma+1:])
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			data = []byte(s)
		}
		if f.Contents.Compression == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		return string(data)
	}
	t.Fatalf("no file %s in the config", p)
	return ""
}

// dropin returns the contents of a unit's drop-in.
func (c config) dropin(t *testing.T, unit, name string) string {
	t.Helper()
	for _, u := range c.Systemd.Units {
		if u.Name != unit {
			continue
		}
		if u.Enabled == nil || !*u.Enabled {
			t.Errorf("unit %s is not enabled", unit)
		}
		for _, d := range u.Dropins {
			if d.Name == name {
				return d.Contents
			}
		}
	}
	t.Fatalf("no drop-in %s of %s in the config", name, unit)
	return ""
}

// environment returns the Environment="K=V" settings of a unit file.
func environment(unit string) map[string]string {
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^Environment="([A-Z_]+)=([^"]*)"$`).FindAllStringSubmatch(unit, -1) {
		env[m[1]] = m[2]
	}
	return env
}

// kernelArgs returns the kernel line's arguments of an iPXE script and its
// initrd lines.
func kernelArgs(t *testing.T, script string) (kernel string, args []string, initrds []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(script), "\n")
	if lines[0] != "#!ipxe" || lines[len(lines)-1] != "boot" {
		t.Fatalf("not an iPXE boot script:\n%s", script)
	}
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		switch f[0] {
		case "kernel":
			kernel, args = f[1], f[2:]
		case "initrd":
			initrds = append(initrds, strings.Join(f[1:], " "))
		default:
			t.Fatalf("unexpected iPXE line %q", l)
		}
	}
	return kernel, args, initrds
}

// arg returns the value of key=value in args; ok is false when absent.
func arg(args []string, key string) (string, bool) {
	for _, a := range args {
		if k, v, found := strings.Cut(a, "="); found && k == key {
			return v, true
		}
	}
	return "", false
}

// hasArg reports whether the bare flag is in args.
func hasArg(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

// ipxeExpand substitutes the iPXE settings a machine's URL carries, as iPXE
// does when it runs a script.
func ipxeExpand(s, uuid, mac string) string {
	return strings.NewReplacer("${uuid}", uuid, "${mac:hexhyp}", strings.ReplaceAll(mac, ":", "-")).Replace(s)
}

const matchboxURL = "http://matchbox.example.com:8080"

// machineQuery is the query iPXE sends to /ipxe after boot.ipxe.
func machineQuery(uuid, mac string) string {
	return "uuid=" + uuid + "&mac=" + strings.ReplaceAll(mac, ":", "-") + "&domain=&hostname=&serial=&arch=x86_64"
}

// TestExamplesHaveReadmes checks every example directory documents itself.
func TestExamplesHaveReadmes(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
			readme, err := os.ReadFile(path.Join(e.Name(), "README.md"))
			if err != nil {
				t.Errorf("%s: %v", e.Name(), err)
				continue
			}
			if !strings.Contains(string(readme), "matchbox serve --data-dir") {
				t.Errorf("%s/README.md does not show how to serve it", e.Name())
			}
		}
	}
	sort.Strings(dirs)
	want := []string{"fcos-install", "flatcar-etcd3", "matchbox-compat", "rack-hardware"}
	if fmt.Sprint(dirs) != fmt.Sprint(want) {
		t.Errorf("example directories %v, want %v (each needs a test)", dirs, want)
	}
}

// TestFlatcarEtcd3 renders the boot script and Ignition of each etcd node.
func TestFlatcarEtcd3(t *testing.T) {
	ex := load(t, "flatcar-etcd3", nil)
	nodes := []struct{ name, mac, uuid string }{
		{"node1", "52:54:00:a1:9c:ae", "11111111-0000-4000-8000-000000000001"},
		{"node2", "52:54:00:b2:2f:86", "11111111-0000-4000-8000-000000000002"},
		{"node3", "52:54:00:c3:61:77", "11111111-0000-4000-8000-000000000003"},
	}
	var peers []string
	for _, n := range nodes {
		peers = append(peers, n.name+"=http://"+n.name+".example.com:2380")
	}
	wantCluster := strings.Join(peers, ",")
	for _, n := range nodes {
		t.Run(n.name, func(t *testing.T) {
			q := machineQuery(n.uuid, n.mac)
			if g := ex.selected(t, q, nil); g != n.name {
				t.Fatalf("selected group %q, want %q", g, n.name)
			}
			kernel, args, initrds := kernelArgs(t, ex.get(t, "/ipxe?"+q))
			if kernel != "/assets/flatcar/current/flatcar_production_pxe.vmlinuz" {
				t.Errorf("kernel %q", kernel)
			}
			if len(initrds) != 1 || initrds[0] != "/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz" {
				t.Errorf("initrds %q", initrds)
			}
			configURL, ok := arg(args, "flatcar.config.url")
			if !ok || configURL != matchboxURL+"/ignition?uuid=${uuid}&mac=${mac:hexhyp}" {
				t.Errorf("flatcar.config.url %q", configURL)
			}
			if v, _ := arg(args, "flatcar.first_boot"); v != "yes" {
				t.Errorf("flatcar.first_boot %q, want yes", v)
			}
			if v, _ := arg(args, "initrd"); v != path.Base(initrds[0]) {
				t.Errorf("initrd= %q does not name the initramfs", v)
			}

			// What Flatcar's Ignition fetches once iPXE expanded the URL.
			u, err := url.Parse(ipxeExpand(configURL, n.uuid, n.mac))
			if err != nil {
				t.Fatal(err)
			}
			c := ex.ignitionFor(t, u.RawQuery, nil)
			if !strings.HasPrefix(c.Ignition.Version, "3.") {
				t.Errorf("Ignition version %q", c.Ignition.Version)
			}
			if h := c.file(t, "/etc/hostname"); h != n.name+".example.com" {
				t.Errorf("hostname %q", h)
			}
			env := environment(c.dropin(t, "etcd-member.service", "40-etcd-cluster.conf"))
			want := map[string]string{
				"ETCD_NAME":                        n.name,
				"ETCD_INITIAL_CLUSTER":             wantCluster,
				"ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://" + n.name + ".example.com:2380",
				"ETCD_ADVERTISE_CLIENT_URLS":       "http://" + n.name + ".example.com:2379",
				"ETCD_LISTEN_PEER_URLS":            "http://0.0.0.0:2380",
				"ETCD_LISTEN_CLIENT_URLS":          "http://0.0.0.0:2379",
				"ETCD_INITIAL_CLUSTER_STATE":       "new",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s=%q, want %q", k, env[k], v)
				}
			}
			if len(c.Passwd.Users) != 1 || c.Passwd.Users[0].Name != "core" || len(c.Passwd.Users[0].SSHAuthorizedKeys) != 1 {
				t.Errorf("users %+v, want core with one SSH key", c.Passwd.Users)
			}
		})
	}
	t.Run("unknown machine", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/ipxe?mac=52:54:00:00:00:01", nil)
		w := httptest.NewRecorder()
		ex.h.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound {
			t.Errorf("status %d, want 404: the example has no default group", w.Code)
		}
	})
}

// TestFCOSInstall follows a machine through both stages: the live
// installer, then the installed system's Ignition fetch.
func TestFCOSInstall(t *testing.T) {
	ex := load(t, "fcos-install", nil)
	const mac, uuid = "52:54:00:d4:1e:07", "22222222-0000-4000-8000-000000000001"
	q := machineQuery(uuid, mac)
	if g := ex.selected(t, q, nil); g != "install" {
		t.Fatalf("network boot selects %q, want install", g)
	}
	kernel, args, initrds := kernelArgs(t, ex.get(t, "/ipxe?"+q))
	m := regexp.MustCompile(`^/assets/fedora-coreos/fedora-coreos-([0-9.]+)-live-kernel-x86_64$`).FindStringSubmatch(kernel)
	if m == nil {
		t.Fatalf("kernel %q is not a Fedora CoreOS live kernel", kernel)
	}
	version := m[1]
	wantInitrd := "--name main /assets/fedora-coreos/fedora-coreos-" + version + "-live-initramfs.x86_64.img"
	if len(initrds) != 1 || initrds[0] != wantInitrd {
		t.Errorf("initrds %q, want %q", initrds, wantInitrd)
	}
	wantArgs := map[string]string{
		"initrd":                   "main",
		"coreos.live.rootfs_url":   matchboxURL + "/assets/fedora-coreos/fedora-coreos-" + version + "-live-rootfs.x86_64.img",
		"coreos.inst.install_dev":  "/dev/sda",
		"coreos.inst.ignition_url": matchboxURL + "/ignition?uuid=${uuid}&mac=${mac:hexhyp}&os=installed",
		"ignition.platform.id":     "metal",
		"ignition.config.url":      matchboxURL + "/ignition?uuid=${uuid}&mac=${mac:hexhyp}",
	}
	for k, want := range wantArgs {
		if got, _ := arg(args, k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if !hasArg(args, "ignition.firstboot") {
		t.Errorf("no ignition.firstboot in %q", args)
	}

	// Stage 1: the live system's own config.
	liveURL, _ := arg(args, "ignition.config.url")
	live, err := url.Parse(ipxeExpand(liveURL, uuid, mac))
	if err != nil {
		t.Fatal(err)
	}
	if g := ex.selected(t, live.RawQuery, nil); g != "install" {
		t.Errorf("the live system's config comes from %q, want install", g)
	}
	lc := ex.ignitionFor(t, live.RawQuery, nil)
	if len(lc.Storage.Files) != 0 || len(lc.Systemd.Units) != 0 {
		t.Errorf("the live system's config should only add an SSH key: %+v", lc)
	}

	// Stage 2: coreos-installer fetches the installed system's config.
	instURL, _ := arg(args, "coreos.inst.ignition_url")
	inst, err := url.Parse(ipxeExpand(instURL, uuid, mac))
	if err != nil {
		t.Fatal(err)
	}
	if inst.Query().Get("os") != "installed" {
		t.Fatalf("installer URL %s does not carry os=installed", inst)
	}
	if g := ex.selected(t, inst.RawQuery, nil); g != "installed" {
		t.Fatalf("the installed system's config comes from %q, want installed", g)
	}
	ic := ex.ignitionFor(t, inst.RawQuery, nil)
	if h := ic.file(t, "/etc/hostname"); h != "node1.example.com" {
		t.Errorf("hostname %q", h)
	}
	if got, want := ic.file(t, "/etc/matchbox/installed-from"), "group=installed mac="+mac+" os=installed"; got != want {
		t.Errorf("installed-from %q, want %q", got, want)
	}
	if !strings.Contains(ex.get(t, "/metadata?"+inst.RawQuery), "HOSTNAME=node1.example.com\n") {
		t.Error("metadata of the installed stage lacks HOSTNAME")
	}
}

// disks returns n disks of size bytes.
func disks(n int, size uint64) []hardware.Disk {
	out := make([]hardware.Disk, n)
	for i := range out {
		out[i] = hardware.Disk{Name: fmt.Sprintf("sd%c", 'a'+i), SizeBytes: size, Rotational: true}
	}
	return out
}

const gib = 1 << 30

// TestRackHardware checks machines with given inventories get the right
// group and config.
func TestRackHardware(t *testing.T) {
	machines := []struct {
		name, mac string
		inv       *hardware.Inventory
		group     string
	}{
		{"12-disk storage server", "52:54:00:10:00:01",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 16}, Memory: hardware.Memory{Bytes: 128 * gib}, Disks: disks(12, 8000*gib)}, "storage"},
		{"exactly 8 disks", "52:54:00:10:00:02",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 8}, Memory: hardware.Memory{Bytes: 32 * gib}, Disks: disks(8, 4000*gib)}, "storage"},
		{"compute server", "52:54:00:10:00:03",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 64}, Memory: hardware.Memory{Bytes: 512 * gib}, Disks: disks(2, 960*gib)}, "compute"},
		{"compute at the thresholds", "52:54:00:10:00:04",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 32}, Memory: hardware.Memory{Bytes: 256 * gib}, Disks: disks(1, 480*gib)}, "compute"},
		{"big machine with many disks is storage (priority)", "52:54:00:10:00:05",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 64}, Memory: hardware.Memory{Bytes: 1024 * gib}, Disks: disks(10, 8000*gib)}, "storage"},
		{"cores without the memory", "52:54:00:10:00:06",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 64}, Memory: hardware.Memory{Bytes: 255 * gib}, Disks: disks(2, 960*gib)}, "default"},
		{"7 disks, small", "52:54:00:10:00:07",
			&hardware.Inventory{CPU: hardware.CPU{Cores: 8}, Memory: hardware.Memory{Bytes: 64 * gib}, Disks: disks(7, 4000*gib)}, "default"},
		{"no inventory yet", "52:54:00:10:00:08", nil, "default"},
	}
	known := fakeMachines{}
	for _, m := range machines {
		if m.inv != nil {
			known[m.mac] = m.inv
		}
	}
	ex := load(t, "rack-hardware", known)
	for _, m := range machines {
		t.Run(m.name, func(t *testing.T) {
			q := machineQuery("", m.mac)
			if g := ex.selected(t, q, m.inv); g != m.group {
				t.Fatalf("selected group %q, want %q", g, m.group)
			}
			kernel, args, _ := kernelArgs(t, ex.get(t, "/ipxe?"+q))
			if m.group == "default" {
				if kernel != "/assets/discovery/vmlinuz" {
					t.Errorf("kernel %q, want the discovery kernel", kernel)
				}
				if id, _ := arg(args, "matchbox.id"); id != strings.ReplaceAll(m.mac, ":", "-") {
					t.Errorf("matchbox.id=%q", id)
				}
				if u, _ := arg(args, "matchbox.url"); u != matchboxURL {
					t.Errorf("matchbox.url=%q", u)
				}
				return
			}
			configURL, _ := arg(args, "flatcar.config.url")
			u, err := url.Parse(ipxeExpand(configURL, "", m.mac))
			if err != nil || u.Host != "matchbox.example.com:8080" {
				t.Fatalf("flatcar.config.url %q (%v)", configURL, err)
			}
			c := ex.ignitionFor(t, u.RawQuery, m.inv)
			if got, want := c.file(t, "/etc/matchbox/role"), "role="+m.group+" mac="+m.mac; got != want {
				t.Errorf("role file %q, want %q", got, want)
			}
			if md := ex.get(t, "/metadata?"+u.RawQuery); !strings.Contains(md, "ROLE="+m.group+"\n") {
				t.Errorf("metadata %q lacks ROLE=%s", md, m.group)
			}
		})
	}
}

// TestMatchboxCompat serves a matchbox v0.11 JSON data directory unchanged.
func TestMatchboxCompat(t *testing.T) {
	ex := load(t, "matchbox-compat", nil)
	raw := func(name string) string {
		b, err := os.ReadFile(path.Join("matchbox-compat", "ignition", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		name, mac, group, ign, hostname string
	}{
		{"node1 by MAC", "52:54:00:e5:4b:21", "node1", "node1.ign", "node1.example.com"},
		{"any other machine", "52:54:00:e5:4b:99", "default", "flatcar.ign", "flatcar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := machineQuery("", c.mac)
			if g := ex.selected(t, q, nil); g != c.group {
				t.Fatalf("selected group %q, want %q", g, c.group)
			}
			kernel, args, _ := kernelArgs(t, ex.get(t, "/ipxe?"+q))
			if kernel != "/assets/flatcar/current/flatcar_production_pxe.vmlinuz" {
				t.Errorf("kernel %q", kernel)
			}
			configURL, _ := arg(args, "flatcar.config.url")
			u, err := url.Parse(ipxeExpand(configURL, "", c.mac))
			if err != nil {
				t.Fatal(err)
			}
			// Raw Ignition is served byte for byte.
			if got := ex.get(t, "/ignition?"+u.RawQuery); got != raw(c.ign) {
				t.Errorf("/ignition served %q, want %s as is", got, c.ign)
			}
			wantEnv := "HOSTNAME=" + c.hostname + "\nMAC=" + c.mac + "\nQUERY=" + u.RawQuery + "\n"
			if got := ex.get(t, "/generic?"+u.RawQuery); got != wantEnv {
				t.Errorf("/generic %q, want %q", got, wantEnv)
			}
		})
	}
	t.Run("nested metadata", func(t *testing.T) {
		md := ex.get(t, "/metadata?mac=52:54:00:e5:4b:21")
		for _, line := range []string{"HOSTNAME=node1.example.com", "POOL_NAME=blue", "POOL_SIZE=3", "MAC=52:54:00:e5:4b:21"} {
			if !strings.Contains(md, line+"\n") {
				t.Errorf("metadata %q lacks %s", md, line)
			}
		}
	})
}

// TestRackHardwareUsesShippedDiscovery: the example's discovery profile is
// the one matchbox ships (profiles/discovery.yaml at the repository root,
// itself a data directory), linked, not copied.
func TestRackHardwareUsesShippedDiscovery(t *testing.T) {
	example, err := filepath.EvalSymlinks("rack-hardware/profiles/discovery.yaml")
	if err == nil {
		example, err = filepath.Abs(example)
	}
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Abs("../profiles/discovery.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if example != shipped {
		t.Fatalf("rack-hardware/profiles/discovery.yaml is %s, want a link to the shipped %s", example, shipped)
	}
}
