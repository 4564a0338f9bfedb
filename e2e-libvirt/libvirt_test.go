package e2elibvirt

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// libvirtQemuConf is bind-mounted over /etc/libvirt/qemu.conf in
// libvirtd's private mount namespace: QEMU runs as root (no 45 s re-probe
// of QEMU per start, no relabelling), logs to files (no virtlogd), without
// cgroups or namespaces (no systemd here).
const libvirtQemuConf = `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
`

// libvirtDriver defines VMs through a libvirtd the harness starts by hand
// inside the lab's namespace (and a private mount namespace whose
// /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /etc/libvirt/qemu are
// folders of the lab: the host's libvirt state is untouched).
type libvirtDriver struct {
	lab *lab
	uri string
}

// startLibvirt starts libvirtd for l and waits until virsh reaches it.
func startLibvirt(t testing.TB, l *lab) (*libvirtDriver, error) {
	t.Helper()
	for _, tool := range []string{"libvirtd", "virsh", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed (packages libvirt-daemon, libvirt-clients in apt-packages)", tool)
		}
	}
	base := filepath.Join(l.Dir, "libvirt")
	// The QEMU capability cache survives runs: libvirtd probes QEMU once.
	capsCache := filepath.Join(cacheDir(t), "libvirt-cache")
	// virsh dials libvirtd's socket from outside the mount namespace, by
	// its path in the run folder. A unix socket path is limited to 108
	// bytes, which a lab folder under a long checkout path exceeds: the
	// run folder is a short temporary one.
	runDir, err := os.MkdirTemp("", "mbe2e-lv-")
	if err != nil {
		return nil, fmt.Errorf("libvirt run folder: %w", err)
	}
	addCleanup(t, func() { os.RemoveAll(runDir) })
	binds := [][2]string{
		{runDir, "/run/libvirt"},
		{filepath.Join(base, "lib"), "/var/lib/libvirt"},
		{filepath.Join(base, "log"), "/var/log/libvirt"},
		{filepath.Join(base, "etc-qemu"), "/etc/libvirt/qemu"},
		{capsCache, "/var/cache/libvirt"},
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, b := range binds {
		if err := os.MkdirAll(b[0], 0o755); err != nil {
			return nil, err
		}
		fmt.Fprintf(&script, "mkdir -p %s && mount --bind %s %s\n", b[1], b[0], b[1])
	}
	conf := filepath.Join(base, "qemu.conf")
	if err := os.WriteFile(conf, []byte(libvirtQemuConf), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(&script, "mount --bind %s /etc/libvirt/qemu.conf\n", conf)
	// The default pid file, /run/libvirtd.pid, would keep two labs (or
	// two runs) from having a libvirtd each.
	fmt.Fprintf(&script, "exec libvirtd --pid-file %s\n", filepath.Join(base, "libvirtd.pid"))
	cmd := l.NS.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	logPath := filepath.Join(l.Dir, "libvirtd.log")
	start := time.Now()
	p := startProcess(t, "libvirtd", cmd, logPath, 10*time.Second)
	l.keep("libvirtd.log")
	d := &libvirtDriver{lab: l, uri: "qemu:///system?socket=" + filepath.Join(runDir, "libvirt-sock")}
	for {
		if p.Exited() {
			return nil, fmt.Errorf("libvirtd exited at start (%v): %s", p.err, tail(logPath, 10))
		}
		if _, err := d.virsh(context.Background(), "version"); err == nil {
			break
		} else if time.Since(start) > 90*time.Second {
			p.Stop(5 * time.Second)
			return nil, fmt.Errorf("libvirtd did not answer within 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("libvirtd ready in %s", time.Since(start).Round(time.Millisecond))
	return d, nil
}

func (d *libvirtDriver) Name() string { return "libvirt" }

// virsh runs virsh against the lab's libvirtd.
func (d *libvirtDriver) virsh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", d.uri}, args...)...)
	// Standard error stays apart: a warning there must not be read as
	// part of an answer such as domstate's.
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()+" "+stderr.String()))
	}
	return out.String(), nil
}

func (d *libvirtDriver) Define(t testing.TB, spec vmSpec) machine {
	t.Helper()
	fillSpec(t, d.lab, &spec)
	xmlPath := filepath.Join(d.lab.Dir, spec.Name+".domain.xml")
	mustWrite(t, xmlPath, domainXML(spec))
	if _, err := d.virsh(context.Background(), "define", xmlPath); err != nil {
		t.Fatalf("VM %s: %v", spec.Name, err)
	}
	m := &libvirtMachine{d: d, spec: spec, boot: "pxe"}
	addCleanup(t, func() {
		ctx := context.Background()
		_, _ = d.virsh(ctx, "destroy", spec.Name)
		_, _ = d.virsh(ctx, "undefine", "--nvram", spec.Name)
	})
	return m
}

// domainXML is the libvirt domain of spec: type qemu (TCG), network boot,
// serial console to a file, destroyed on power-off and reboot.
func domainXML(spec vmSpec) string {
	esc := func(s string) string {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	var os, features string
	switch spec.Firmware {
	case firmwareUEFI:
		os = fmt.Sprintf(`<type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='no' type='pflash'>%s</loader>
    <nvram>%s</nvram>
    <boot dev='network'/>`, ovmfCode, esc(spec.VarsFile))
		features = "<acpi/>"
	default:
		os = `<type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='network'/>
    <bios useserial='yes'/>`
		features = "<acpi/>"
	}
	model := "e1000"
	if spec.NIC == "virtio" {
		model = "virtio"
	}
	rom := ""
	if spec.NativePXE {
		rom = "\n      <rom enabled='no'/>"
	}
	var disks strings.Builder
	for i, f := range spec.DiskFiles {
		fmt.Fprintf(&disks, `
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='unsafe'/>
      <source file='%s'/>
      <target dev='vd%c' bus='virtio'/>
      <serial>%s</serial>
    </disk>`, esc(f), 'a'+i, spec.diskSerial(i))
	}
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>%d</memory>
  <vcpu>%d</vcpu>
  <os>
    %s
  </os>
  <features>%s</features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>%s
    <interface type='ethernet'>
      <mac address='%s'/>
      <target dev='%s' managed='no'/>
      <model type='%s'/>%s
    </interface>
    <serial type='file'>
      <source path='%s' append='on'/>
      <target port='0'/>
    </serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`, esc(spec.Name), spec.UUID, spec.memory(), spec.cpus(), os, features, disks.String(), spec.MAC, esc(spec.Tap), model, rom, esc(spec.SerialLog))
}

type libvirtMachine struct {
	d    *libvirtDriver
	spec vmSpec

	mu   sync.Mutex
	boot string
}

func (m *libvirtMachine) Spec() vmSpec { return m.spec }

func (m *libvirtMachine) PowerOn(ctx context.Context) error {
	if on, err := m.PoweredOn(ctx); err == nil && on {
		return nil
	}
	_, err := m.d.virsh(ctx, "start", m.spec.Name)
	return err
}

func (m *libvirtMachine) PowerOff(ctx context.Context) error {
	if on, err := m.PoweredOn(ctx); err == nil && !on {
		return nil
	}
	_, err := m.d.virsh(ctx, "destroy", m.spec.Name)
	return err
}

func (m *libvirtMachine) PoweredOn(ctx context.Context) (bool, error) {
	out, err := m.d.virsh(ctx, "domstate", m.spec.Name)
	if err != nil {
		return false, err
	}
	state, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	switch strings.TrimSpace(state) {
	case "running", "paused", "in shutdown", "idle", "pmsuspended", "dying":
		return true, nil
	case "shut off", "crashed":
		return false, nil
	}
	// Anything else is no answer: callers keep waiting rather than take
	// a VM that is booting for one that powered off.
	return false, fmt.Errorf("virsh domstate %s: unexpected answer %q", m.spec.Name, out)
}

func (m *libvirtMachine) SetBootDevice(dev string) {
	m.mu.Lock()
	m.boot = dev
	m.mu.Unlock()
}

func (m *libvirtMachine) BootDevice() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot
}

func (m *libvirtMachine) WaitOff(ctx context.Context) error {
	for {
		on, err := m.PoweredOn(ctx)
		if err == nil && !on {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s still running: %w", m.spec.Name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
