package e2elibvirt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OVMF firmware files (Debian ovmf).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// qemuDriver runs each VM as a qemu-system-x86_64 process (TCG) inside the
// lab's namespace; the test owns the process and waits on it.
type qemuDriver struct{ lab *lab }

func (d *qemuDriver) Name() string { return "qemu" }

func (d *qemuDriver) Define(t testing.TB, spec vmSpec) machine {
	t.Helper()
	fillSpec(t, d.lab, &spec)
	m := &qemuMachine{lab: d.lab, spec: spec, boot: "pxe", log: filepath.Join(d.lab.Dir, spec.Name+".qemu.log")}
	addCleanup(t, func() { _ = m.PowerOff(context.Background()) })
	return m
}

// fillSpec gives a VM its tap, serial log and UEFI variable store.
func fillSpec(t testing.TB, l *lab, spec *vmSpec) {
	t.Helper()
	if spec.UUID == "" {
		spec.UUID = uuidFor(spec.MAC)
	}
	if spec.Tap == "" {
		spec.Tap = l.NS.AddTap(t)
	}
	if spec.SerialLog == "" {
		spec.SerialLog = filepath.Join(l.Dir, spec.Name+".serial.log")
		l.keep(spec.Name + ".serial.log")
	}
	if spec.Firmware == firmwareUEFI && spec.VarsFile == "" {
		spec.VarsFile = filepath.Join(l.Dir, spec.Name+".OVMF_VARS.fd")
		mustCopy(t, ovmfVars, spec.VarsFile)
	}
	for i := len(spec.DiskFiles); i < spec.Disks; i++ {
		// Sparse: a blank disk takes no space.
		f := filepath.Join(l.Dir, fmt.Sprintf("%s.disk%d.img", spec.Name, i))
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatalf("VM %s: disk: %v", spec.Name, err)
		}
		if err := os.Truncate(f, diskSizeBytes); err != nil {
			t.Fatalf("VM %s: disk: %v", spec.Name, err)
		}
		spec.DiskFiles = append(spec.DiskFiles, f)
	}
}

type qemuMachine struct {
	lab  *lab
	spec vmSpec
	log  string

	mu   sync.Mutex
	boot string
	cmd  *exec.Cmd
	done chan struct{}
}

func (m *qemuMachine) Spec() vmSpec { return m.spec }

// qemuArgs is the QEMU command line of spec (LAB.md's, measured here).
func qemuArgs(spec vmSpec) []string {
	args := []string{
		"-name", spec.Name, "-uuid", spec.UUID, "-accel", "tcg", "-m", strconv.Itoa(spec.memory()), "-smp", strconv.Itoa(spec.cpus()),
		"-nodefaults", "-no-user-config", "-nographic", "-monitor", "none", "-no-reboot",
		"-chardev", "file,id=ser0,path=" + spec.SerialLog + ",append=on", "-serial", "chardev:ser0",
		"-netdev", "tap,id=n0,ifname=" + spec.Tap + ",script=no,downscript=no",
	}
	dev := "e1000"
	if spec.NIC == "virtio" {
		dev = "virtio-net-pci"
	}
	dev += ",netdev=n0,mac=" + spec.MAC + ",bootindex=1"
	if spec.NativePXE {
		dev += ",romfile="
	}
	if spec.Firmware == firmwareUEFI {
		args = append(args, "-machine", "q35",
			"-global", "driver=cfi.pflash01,property=secure,value=off",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+spec.VarsFile)
	} else {
		args = append(args, "-machine", "pc", "-boot", "n")
	}
	args = append(args, "-device", dev)
	for i, f := range spec.DiskFiles {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=disk%d,cache=unsafe", f, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, spec.diskSerial(i)))
	}
	return args
}

func (m *qemuMachine) PowerOn(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running() {
		return nil
	}
	cmd := m.lab.NS.Command("qemu-system-x86_64", qemuArgs(m.spec)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf, err := openAppend(m.log)
	if err != nil {
		return fmt.Errorf("VM %s: %w", m.spec.Name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("VM %s: start qemu: %w", m.spec.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

// running reports whether the QEMU process lives; m.mu is held.
func (m *qemuMachine) running() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *qemuMachine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running() {
		return nil
	}
	// SIGKILL: QEMU takes over a second for SIGTERM under TCG; a pulled
	// plug is what a BMC's power off is anyway.
	_ = m.cmd.Process.Kill()
	select {
	case <-m.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("VM %s: qemu did not exit after SIGKILL", m.spec.Name)
	}
}

func (m *qemuMachine) PoweredOn(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running(), nil
}

func (m *qemuMachine) SetBootDevice(dev string) {
	m.mu.Lock()
	m.boot = dev
	m.mu.Unlock()
}

func (m *qemuMachine) BootDevice() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot
}

func (m *qemuMachine) WaitOff(ctx context.Context) error {
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("VM %s still running: %w (see %s)", m.spec.Name, ctx.Err(), m.log)
	}
}
