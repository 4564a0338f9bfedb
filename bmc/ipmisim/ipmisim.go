// Package ipmisim starts OpenIPMI's ipmi_sim as a real IPMI-over-LAN peer for
// tests. The simulated chassis keeps its power and boot state in plain files
// through a chassis_control shell script, so a test can assert that a command
// sent over IPMI really took effect.
//
// Start skips the calling test when ipmi_sim or ipmitool is not installed
// (Debian packages openipmi and ipmitool).
package ipmisim

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"matchbox/internal/needs"
)

// Options configures a simulated BMC. The zero value is usable.
type Options struct {
	// Username and Password of the single admin user (default "admin" and
	// "password").
	Username, Password string
	// PoweredOn is the initial chassis power state (default off).
	PoweredOn bool
	// ReadyTimeout bounds how long Start waits for the simulator to answer
	// (default 15s).
	ReadyTimeout time.Duration
}

// Sim is a running ipmi_sim instance bound to 127.0.0.1.
type Sim struct {
	// Host is the address the simulator listens on (127.0.0.1).
	Host string
	// Port is the IPMI-over-LAN UDP port.
	Port int
	// Username and Password are the admin credentials.
	Username, Password string
	// CipherSuite is the IPMI cipher suite the simulator supports ("3").
	CipherSuite string
	// Dir is the folder holding the configuration and the state files.
	Dir string
	// PowerFile holds the chassis power state: "1" (on) or "0" (off).
	PowerFile string
	// BootFile holds the next boot device as set over IPMI ("pxe", "default", ...).
	BootFile string
	// EventsFile receives one line per chassis_control "set" call, in order,
	// e.g. "power 0", "power 1", "reset 1", "boot pxe".
	EventsFile string

	cmd *exec.Cmd
}

const chassisScript = `#!/bin/sh
# chassis_control for ipmi_sim: state lives in files in the folder given as $1.
d="$1"; shift
op="$1"; shift
case "$op" in
get)
  for p in "$@"; do
    case "$p" in
    power) echo "power:$(cat "$d/power" 2>/dev/null || echo 0)" ;;
    boot) echo "boot:$(cat "$d/boot" 2>/dev/null || echo default)" ;;
    esac
  done
  ;;
set)
  while [ "$#" -ge 2 ]; do
    p="$1"; v="$2"; shift 2
    echo "$p $v" >> "$d/events"
    case "$p" in
    power) echo "$v" > "$d/power" ;;
    boot) echo "$v" > "$d/boot" ;;
    reset) echo 1 > "$d/power" ;;
    shutdown) echo 0 > "$d/power" ;;
    esac
  done
  ;;
esac
exit 0
`

// Start writes the simulator configuration into a temporary folder, starts
// ipmi_sim on free loopback ports and waits until ipmitool gets an answer.
// The simulator is killed when the test ends.
func Start(t testing.TB, opts Options) *Sim {
	t.Helper()
	simPath, err := exec.LookPath("ipmi_sim")
	if err != nil {
		needs.Skip(t, "ipmi_sim not installed (Debian package openipmi): skipping test against a real IPMI peer")
	}
	if _, err := exec.LookPath("ipmitool"); err != nil {
		needs.Skip(t, "ipmitool not installed (Debian package ipmitool): skipping test against a real IPMI peer")
	}
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "password"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 15 * time.Second
	}
	dir := t.TempDir()
	s := &Sim{
		Host:        "127.0.0.1",
		Username:    opts.Username,
		Password:    opts.Password,
		CipherSuite: "3",
		Dir:         dir,
		PowerFile:   filepath.Join(dir, "power"),
		BootFile:    filepath.Join(dir, "boot"),
		EventsFile:  filepath.Join(dir, "events"),
	}
	power := "0"
	if opts.PoweredOn {
		power = "1"
	}
	mustWrite(t, s.PowerFile, power+"\n", 0o644)
	mustWrite(t, s.BootFile, "default\n", 0o644)
	mustWrite(t, s.EventsFile, "", 0o644)
	script := filepath.Join(dir, "chassis_control.sh")
	mustWrite(t, script, chassisScript, 0o755)

	s.Port = FreeUDPPort(t)
	lanPath, emuPath := WriteConfig(t, dir, Config{
		Name: "matchbox-test", LANPort: s.Port, SerialPort: FreeTCPPort(t),
		ChassisControl: script + " " + dir, Username: opts.Username, Password: opts.Password,
	})
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o755); err != nil {
		t.Fatalf("ipmisim: create state dir: %v", err)
	}

	logFile, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatalf("ipmisim: create log: %v", err)
	}
	cmd := exec.Command(simPath, "-c", lanPath, "-f", emuPath, "-s", stateDir, "-n")
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("ipmisim: start %s: %v", simPath, err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	deadline := time.Now().Add(opts.ReadyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			t.Fatalf("ipmisim: ipmi_sim exited during start-up: %s", log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, lastErr = s.Ipmitool(ctx, "chassis", "power", "status")
		cancel()
		if lastErr == nil {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ipmisim: ipmi_sim on port %d did not answer within %v: %v", s.Port, opts.ReadyTimeout, lastErr)
	return nil
}

// Ipmitool runs the ipmitool binary against the simulator (lanplus, cipher
// suite 3) with the given command, e.g. "chassis", "power", "status", and
// returns its combined output.
func (s *Sim) Ipmitool(ctx context.Context, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", s.CipherSuite, "-H", s.Host, "-p", strconv.Itoa(s.Port),
		"-U", s.Username, "-E", "-N", "1", "-R", "2"}
	cmd := exec.CommandContext(ctx, "ipmitool", append(base, args...)...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + s.Password}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Power reports the chassis power state as kept by the chassis_control
// program: true when on.
func (s *Sim) Power(t testing.TB) bool {
	t.Helper()
	return s.readState(t, s.PowerFile) == "1"
}

// SetPower writes the chassis power state directly, bypassing IPMI.
func (s *Sim) SetPower(t testing.TB, on bool) {
	t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	mustWrite(t, s.PowerFile, v+"\n", 0o644)
}

// Boot reports the next boot device as kept by the chassis_control program.
func (s *Sim) Boot(t testing.TB) string {
	t.Helper()
	return s.readState(t, s.BootFile)
}

// Events returns the chassis_control "set" calls received so far, one per
// element, in order.
func (s *Sim) Events(t testing.TB) []string {
	t.Helper()
	raw := s.readState(t, s.EventsFile)
	if raw == "" {
		return nil
	}
	return strings.Split(raw, "\n")
}

// ResetEvents empties the events file.
func (s *Sim) ResetEvents(t testing.TB) {
	t.Helper()
	mustWrite(t, s.EventsFile, "", 0o644)
}

func (s *Sim) readState(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ipmisim: read %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

func mustWrite(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("ipmisim: write %s: %v", path, err)
	}
}

// Config is what WriteConfig puts into ipmi_sim's configuration files.
type Config struct {
	// Name names the simulated BMC.
	Name string
	// LANPort is the IPMI-over-LAN UDP port on 127.0.0.1.
	LANPort int
	// SerialPort is a free TCP port on 127.0.0.1: ipmi_sim needs a serial
	// interface, or every power command fails with completion code 0xcc.
	SerialPort int
	// ChassisControl is the command line ipmi_sim runs for power and boot
	// device requests ("PROGRAM ARGS"; it is called with get/set verbs).
	ChassisControl string
	// Username and Password of the single admin user.
	Username, Password string
}

// WriteConfig writes ipmi_sim's lan.conf and bmc.emu into dir, as measured
// to work with ipmitool's lanplus cipher suite 3, and returns their paths.
func WriteConfig(t testing.TB, dir string, c Config) (lanConf, emu string) {
	t.Helper()
	lan := fmt.Sprintf(`name "%s"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 %d
  priv_limit admin
  allowed_auths_callback none md2 md5 straight
  allowed_auths_user none md2 md5 straight
  allowed_auths_operator none md2 md5 straight
  allowed_auths_admin none md2 md5 straight
  guid a123456789abcdefa123456789abcdef
endlan
serial 15 127.0.0.1 %d codec VM
chassis_control "%s"
user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, c.Name, c.LANPort, c.SerialPort, c.ChassisControl, c.Username, c.Password)
	lanConf, emu = filepath.Join(dir, "lan.conf"), filepath.Join(dir, "bmc.emu")
	mustWrite(t, lanConf, lan, 0o644)
	mustWrite(t, emu, "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n", 0o644)
	return lanConf, emu
}

// FreeUDPPort returns a UDP port free on 127.0.0.1 at the time of the call.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ipmisim: find a free UDP port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ipmisim: find a free TCP port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
