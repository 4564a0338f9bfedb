package tftp

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/internal/needs"
)

// Tests of os-assets/get-ipxe, the script that fills the TFTP root.

func getIPXEScript(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"bash", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skipf(t, "%s not installed: get-ipxe test skipped", tool)
		}
	}
	p, err := filepath.Abs(filepath.Join("..", "os-assets", "get-ipxe"))
	must(t, err)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("get-ipxe script: %v", err)
	}
	return p
}

func runGetIPXE(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{getIPXEScript(t)}, args...)...)
	cmd.Env = append(os.Environ(), "GET_IPXE_NO_INSTALL=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeIPXE makes a source directory like /usr/lib/ipxe, with ipxe.efi as a
// symbolic link to a file elsewhere (as Debian ships it) and, when arm64 is
// true, arm64 binaries in the iPXE build layout.
func fakeIPXE(t *testing.T, arm64 bool) (string, map[string][]byte) {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "ipxe")
	must(t, os.MkdirAll(src, 0o755))
	files := map[string][]byte{}
	for _, n := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi", "arm64/ipxe.efi", "arm64/snponly.efi"} {
		b := make([]byte, 4096+len(n))
		rand.Read(b)
		files[n] = b
	}
	must(t, os.WriteFile(filepath.Join(src, "undionly.kpxe"), files["undionly.kpxe"], 0o644))
	must(t, os.WriteFile(filepath.Join(src, "snponly.efi"), files["snponly.efi"], 0o644))
	must(t, os.MkdirAll(filepath.Join(base, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "boot", "ipxe.efi"), files["ipxe.efi"], 0o644))
	must(t, os.Symlink(filepath.Join(base, "boot", "ipxe.efi"), filepath.Join(src, "ipxe.efi")))
	if arm64 {
		must(t, os.MkdirAll(filepath.Join(src, "arm64-efi"), 0o755))
		must(t, os.WriteFile(filepath.Join(src, "arm64-efi", "ipxe.efi"), files["arm64/ipxe.efi"], 0o644))
		// The other naming: snponly-arm64.efi beside the x86 files.
		must(t, os.WriteFile(filepath.Join(src, "snponly-arm64.efi"), files["arm64/snponly.efi"], 0o644))
	} else {
		delete(files, "arm64/ipxe.efi")
		delete(files, "arm64/snponly.efi")
	}
	return src, files
}

func checkSums(t *testing.T, dest string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		fi, err := os.Lstat(filepath.Join(dest, name))
		must(t, err)
		if !fi.Mode().IsRegular() {
			t.Errorf("%s is not a regular file (%v)", name, fi.Mode())
		}
		got, err := os.ReadFile(filepath.Join(dest, name))
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from its source", name)
		}
	}
	sums, err := os.ReadFile(filepath.Join(dest, "SHA256SUMS"))
	must(t, err)
	if n := strings.Count(string(sums), "\n"); n != len(files) {
		t.Errorf("SHA256SUMS has %d lines, want %d:\n%s", n, len(files), sums)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dest
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	}
}

func TestGetIPXEFrom(t *testing.T) {
	for _, arm64 := range []bool{false, true} {
		src, files := fakeIPXE(t, arm64)
		dest := filepath.Join(t.TempDir(), "assets", "tftp")
		out, err := runGetIPXE(t, "--from", src, "--dest", dest)
		if err != nil {
			t.Fatalf("get-ipxe: %v\n%s", err, out)
		}
		checkSums(t, dest, files)
		// Running again replaces the files in place and stays correct.
		out, err = runGetIPXE(t, "--from="+src, "--dest="+dest)
		if err != nil {
			t.Fatalf("get-ipxe again: %v\n%s", err, out)
		}
		checkSums(t, dest, files)
	}
}

func TestGetIPXEDryRun(t *testing.T) {
	src, files := fakeIPXE(t, true)
	dest := filepath.Join(t.TempDir(), "tftp")
	out, err := runGetIPXE(t, "--dry-run", "--from", src, "--dest", dest)
	if err != nil {
		t.Fatalf("get-ipxe --dry-run: %v\n%s", err, out)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("--dry-run created %s (%v)", dest, err)
	}
	for name := range files {
		if !strings.Contains(out, "-> "+filepath.Join(dest, name)+"\n") {
			t.Errorf("--dry-run output lacks %s:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "would write "+filepath.Join(dest, "SHA256SUMS")) {
		t.Errorf("--dry-run output lacks SHA256SUMS:\n%s", out)
	}
}

func TestGetIPXEErrors(t *testing.T) {
	src, _ := fakeIPXE(t, false)
	must(t, os.Remove(filepath.Join(src, "snponly.efi")))
	dest := filepath.Join(t.TempDir(), "tftp")
	out, err := runGetIPXE(t, "--from", src, "--dest", dest)
	if err == nil || !strings.Contains(out, "snponly.efi") {
		t.Fatalf("missing snponly.efi: err %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dest, "SHA256SUMS")); err == nil {
		t.Fatal("SHA256SUMS written although a binary was missing")
	}
	if out, err := runGetIPXE(t, "--from", filepath.Join(src, "nope")); err == nil {
		t.Fatalf("missing --from dir accepted:\n%s", out)
	}
	cmd := exec.Command("bash", getIPXEScript(t), "--bogus")
	if err := cmd.Run(); err == nil {
		t.Fatal("unknown flag accepted")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("unknown flag: %v, want exit status 2", err)
	}
}

// TestGetIPXEDebianServed copies the real binaries of Debian's ipxe package
// (when installed) and serves them: the TFTP server reads back exactly what
// SHA256SUMS records.
func TestGetIPXEDebianServed(t *testing.T) {
	if _, err := os.Stat(debianUndionly); err != nil {
		needs.Skip(t, "Debian's ipxe package is not installed (apt-get install ipxe): test skipped")
	}
	dest := filepath.Join(t.TempDir(), "tftp")
	out, err := runGetIPXE(t, "--dest", dest)
	if err != nil {
		t.Fatalf("get-ipxe: %v\n%s", err, out)
	}
	files := map[string][]byte{}
	for _, n := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"} {
		b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", n))
		must(t, err)
		files[n] = b
	}
	checkSums(t, dest, files)

	e := newEnv(t, func(c *Config) { c.Root = dest })
	for name, want := range files {
		got, size, _, err := e.get(name, 1468, true)
		if err != nil {
			t.Fatalf("TFTP get %s: %v", name, err)
		}
		if !bytes.Equal(got, want) || size != int64(len(want)) {
			t.Fatalf("TFTP get %s: %d bytes (tsize %d), want %d", name, len(got), size, len(want))
		}
	}
}
