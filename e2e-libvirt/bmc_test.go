package e2elibvirt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/bmc/ipmisim"
)

// chassisControlArg makes the test binary act as ipmi_sim's chassis_control
// program: `BINARY chassis-control SOCKET get power` and the like.
const chassisControlArg = "chassis-control"

// chassisControlMain forwards one chassis_control call to the harness over
// its unix socket and prints the answer for ipmi_sim.
func chassisControlMain(sock string, args []string) int {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chassis-control: %v\n", err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, strings.Join(args, " ")); err != nil {
		fmt.Fprintf(os.Stderr, "chassis-control: %v\n", err)
		return 1
	}
	if _, err := io.Copy(os.Stdout, c); err != nil {
		fmt.Fprintf(os.Stderr, "chassis-control: %v\n", err)
		return 1
	}
	return 0
}

// vmBMC is a VM's BMC: an ipmi_sim on the host's loopback whose chassis
// control powers the VM on (start), off (kill/destroy) and sets its boot
// device. Power actions run in order in the background, so ipmi_sim gets
// its answer at once (it retransmits after about 1 s).
type vmBMC struct {
	// Host and Port are the IPMI-over-LAN address; Username, Password and
	// CipherSuite log in.
	Host                         string
	Port                         int
	Username, Password, CipherSu string

	ns     *netNS // the namespace ipmi_sim runs in; nil: the host's
	m      machine
	mu     sync.Mutex
	events []string
	want   bool // power state last asked for
	queued int  // power actions not done yet
	ops    chan func()
}

// startBMC starts the BMC of m on the host's loopback; it stops when t
// ends.
func startBMC(t testing.TB, l *lab, m machine) *vmBMC {
	t.Helper()
	return startBMCIn(t, l, m, nil, 0)
}

// startBMCIn starts the BMC of m on the loopback of ns (where matchbox
// reaches it) on port, or of the host when ns is nil.
func startBMCIn(t testing.TB, l *lab, m machine, ns *netNS, port int) *vmBMC {
	t.Helper()
	b := &vmBMC{ns: ns, Host: "127.0.0.1", Username: "admin", Password: "password", CipherSu: "3", m: m, ops: make(chan func(), 16)}
	name := m.Spec().Name
	dir := filepath.Join(l.Dir, "bmc-"+name)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatalf("BMC %s: %v", name, err)
	}
	// A unix socket path is limited to 108 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "mbe2e-bmc-")
	if err != nil {
		t.Fatalf("BMC %s: %v", name, err)
	}
	addCleanup(t, func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "chassis.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("BMC %s: listen %s: %v", name, sock, err)
	}
	stop := make(chan struct{})
	addCleanup(t, func() { close(stop); ln.Close() })
	go b.worker(stop)
	go b.serve(ln)

	self, err := os.Executable()
	if err != nil {
		t.Fatalf("BMC %s: test binary: %v", name, err)
	}
	b.Port = port
	if ns == nil {
		b.Port = ipmisim.FreeUDPPort(t)
	}
	lanConf, emu := ipmisim.WriteConfig(t, dir, ipmisim.Config{
		Name: name, LANPort: b.Port, SerialPort: ipmisim.FreeTCPPort(t),
		ChassisControl: self + " " + chassisControlArg + " " + sock,
		Username:       b.Username, Password: b.Password,
	})
	cmd := b.command("ipmi_sim", "-c", lanConf, "-f", emu, "-s", filepath.Join(dir, "state"), "-n")
	cmd.Dir = dir
	p := startProcess(t, "ipmi_sim "+name, cmd, filepath.Join(dir, "ipmi_sim.log"), time.Second)
	// A loaded machine (other tests, QEMU under TCG) may take a while to
	// start ipmi_sim and answer.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := b.Ipmitool(ctx, "chassis", "power", "status")
		cancel()
		if err == nil {
			return b
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("BMC %s: ipmi_sim on port %d does not answer: %v", name, b.Port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// worker runs the queued power actions in order.
func (b *vmBMC) worker(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case op := <-b.ops:
			op()
			b.mu.Lock()
			b.queued--
			b.mu.Unlock()
		}
	}
}

func (b *vmBMC) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, b.handle(strings.Fields(line)))
		}()
	}
}

// handle answers one chassis_control call: `get power boot ...` or
// `set NAME VALUE ...`.
func (b *vmBMC) handle(args []string) string {
	if len(args) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out strings.Builder
	switch args[0] {
	case "get":
		for _, p := range args[1:] {
			switch p {
			case "power":
				b.mu.Lock()
				on, queued := b.want, b.queued
				b.mu.Unlock()
				if queued == 0 {
					on, _ = b.m.PoweredOn(ctx)
				}
				fmt.Fprintf(&out, "power:%d\n", map[bool]int{false: 0, true: 1}[on])
			case "boot":
				fmt.Fprintf(&out, "boot:%s\n", b.m.BootDevice())
			}
		}
	case "set":
		for i := 1; i+1 < len(args); i += 2 {
			p, v := args[i], args[i+1]
			b.mu.Lock()
			b.events = append(b.events, p+" "+v)
			b.mu.Unlock()
			switch {
			case p == "power" && v == "1":
				b.enqueue(true, b.powerOn)
			case p == "power" && v == "0", p == "shutdown":
				b.enqueue(false, b.powerOff)
			case p == "reset":
				b.enqueue(true, func() { b.powerOff(); b.powerOn() })
			case p == "boot":
				b.m.SetBootDevice(v)
			}
		}
	}
	return out.String()
}

func (b *vmBMC) enqueue(want bool, op func()) {
	b.mu.Lock()
	b.want = want
	b.queued++
	b.mu.Unlock()
	b.ops <- op
}

func (b *vmBMC) powerOn() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.m.PowerOn(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: BMC of %s: power on: %v\n", b.m.Spec().Name, err)
	}
}

func (b *vmBMC) powerOff() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.m.PowerOff(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: BMC of %s: power off: %v\n", b.m.Spec().Name, err)
	}
}

// Events returns the chassis_control set calls received, in order
// ("power 1", "boot pxe", ...).
func (b *vmBMC) Events() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

// Ipmitool runs ipmitool against the BMC (lanplus, cipher suite 3).
func (b *vmBMC) Ipmitool(ctx context.Context, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", b.CipherSu, "-H", b.Host, "-p", fmt.Sprint(b.Port),
		"-U", b.Username, "-E", "-N", "1", "-R", "2"}
	cmd := b.command("ipmitool", append(base, args...)...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + b.Password}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("ipmitool %s: %w", strings.Join(args, " "), err)
	}
	// The process exists once Start returns: only then may ctx kill it.
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	stop()
	out := buf.String()
	if err != nil {
		return out, fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return out, nil
}

// ipmitoolSettled runs an ipmitool command that is safe to repeat (boot
// device, power on) up to three times. ipmi_sim now and then refuses such
// a command right after it starts and takes it a moment later (seen:
// "Error setting Chassis Boot Parameter 5" on chassis bootdev pxe); each
// refusal is logged, and the third one is returned.
func ipmitoolSettled(ctx context.Context, t testing.TB, b *vmBMC, args ...string) error {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if _, err = b.Ipmitool(ctx, args...); err == nil {
			return nil
		}
		t.Logf("BMC refused (attempt %d of 3): %v", attempt, err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
	return err
}

// command runs name where the BMC lives.
func (b *vmBMC) command(name string, args ...string) *exec.Cmd {
	if b.ns != nil {
		return b.ns.Command(name, args...)
	}
	return exec.Command(name, args...)
}
