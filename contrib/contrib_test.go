// Package contrib holds packaging (systemd unit, environment file,
// Containerfile); its tests check them against the binary.
package contrib

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"matchbox/internal/needs"
)

// unitKeys reads a systemd unit into section → key → values (a key may
// repeat).
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			keys[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			keys[section][k] = append(keys[section][k], v)
		}
	}
	return keys
}

func TestUnitHardening(t *testing.T) {
	u := unitKeys(t, "systemd/matchbox.service")
	svc := u["Service"]
	want := map[string]string{
		"User":                    "matchbox",
		"StateDirectory":          "matchbox",
		"ExecStart":               "/usr/local/bin/matchbox serve",
		"EnvironmentFile":         "-/etc/matchbox/matchbox.env",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE CAP_NET_RAW",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE CAP_NET_RAW",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelModules":    "yes",
		"RestrictSUIDSGID":        "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
	}
	for k, v := range want {
		got := svc[k]
		if len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	// No capability beyond the two, anywhere in the unit.
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		for _, c := range strings.Fields(strings.Join(svc[k], " ")) {
			if c != "CAP_NET_BIND_SERVICE" && c != "CAP_NET_RAW" {
				t.Errorf("%s grants %s", k, c)
			}
		}
	}
	// The data directory StateDirectory creates is serve's default.
	if svc["Environment"] != nil {
		t.Errorf("settings belong in the environment file, not Environment=: %q", svc["Environment"])
	}
	if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with only
// ExecStart's binary path pointed at an executable that exists here.
func TestUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		needs.Skip(t, "systemd-analyze not installed (Debian package systemd); TestUnitHardening checks the keys")
	}
	data, err := os.ReadFile("systemd/matchbox.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	unit := strings.Replace(string(data), "ExecStart=/usr/local/bin/matchbox", "ExecStart="+bin, 1)
	p := filepath.Join(t.TempDir(), "matchbox.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var envLineRE = regexp.MustCompile(`^#?(MATCHBOX_[A-Z0-9_]+)=`)

// TestEnvFileNamesFlags checks that every variable of the environment
// file, set or commented out, is one the binary reads.
func TestEnvFileNamesFlags(t *testing.T) {
	help, err := exec.Command(buildBinary(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, help)
	}
	data, err := os.ReadFile("systemd/matchbox.env")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		m := envLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		if m[1] == "MATCHBOX_PASSPHRASE" {
			continue // read from the environment only
		}
		flag := "--" + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(m[1], "MATCHBOX_"), "_", "-"))
		if !regexp.MustCompile(regexp.QuoteMeta(flag) + `\b`).Match(help) {
			t.Errorf("matchbox.env:%d: %s: serve has no flag %s", i+1, m[1], flag)
		}
	}
	if n < 10 {
		t.Fatalf("only %d variables found in matchbox.env", n)
	}
}

// containerBuild returns the Containerfile's go build command.
func containerBuild(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if cmd, ok := strings.CutPrefix(line, "RUN "); ok && strings.Contains(cmd, "go build") {
			return cmd
		}
	}
	t.Fatal("Containerfile has no RUN ... go build line")
	return ""
}

// buildBinary builds the binary exactly as the Containerfile's build stage
// does (its RUN line, run by sh in the repository root with VERSION and
// COMMIT set like its ARGs), with /out moved under a temporary directory.
// It is built once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	run := containerBuild(t)
	buildOnce.Do(func() { builtBin, buildErr = build(run) })
	bin, err := builtBin, buildErr
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestMain removes the binary built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(strings.TrimSuffix(builtBin, "/usr/local/bin/matchbox"))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func build(run string) (string, error) {
	out, err := os.MkdirTemp("", "matchbox-image-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(run, "/out/", out+"/"))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-test", "COMMIT=0123456789ab")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("container build command: %v\n%s", err, b)
	}
	return filepath.Join(out, "usr/local/bin/matchbox"), nil
}

func TestContainerBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs %q", libs)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("file: %s", out)
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(v), "matchbox v0.0.0-test commit 0123456789ab go1.") {
		t.Errorf("version of the image's binary: %v %q", err, v)
	}
}

// TestContainerRunsAsNonRoot starts the image's binary as the image does:
// UID 65532, the image's environment, its CMD (serve), a data directory
// owned by that user. A container runtime is used when one can build the
// image; none can here (no podman or buildah, and no registry for the
// golang base image), so the binary runs under setpriv instead.
func TestContainerRunsAsNonRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root to switch to UID 65532")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		needs.Skip(t, "setpriv not installed (util-linux)")
	}
	bin := buildBinary(t)
	// The binary and the data directory must be reachable for UID 65532.
	for d := filepath.Dir(bin); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	root := t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	data := filepath.Join(root, "var-lib-matchbox")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(setpriv, "--reuid", "65532", "--regid", "65532", "--clear-groups", "--inh-caps=-all", bin, "serve")
	cmd.Env = []string{"MATCHBOX_HTTP_ADDR=" + addr, "MATCHBOX_DATA_DIR=" + data, "HOME=/nonexistent"}
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/boot.ipxe")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = fmt.Sprintf("%d %s", resp.StatusCode, b)
		break
	}
	if !strings.HasPrefix(body, "200 #!ipxe") {
		t.Fatalf("non-root serve: /boot.ipxe answered %q; logs:\n%s", body, logs)
	}
	if st, err := os.Stat(filepath.Join(data, "matchbox.db")); err != nil {
		t.Fatalf("no database in the data directory: %v", err)
	} else if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 65532 {
		t.Errorf("database owned by UID %d, want 65532", uid)
	}
}
