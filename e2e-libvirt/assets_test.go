package e2elibvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the module root (the tests run in e2e-libvirt/).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return dir
}

// cacheDir is where the test OS and its packages are kept between runs.
func cacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("E2E_CACHE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("cache directory: %v (set E2E_CACHE_DIR)", err)
	}
	return filepath.Join(home, ".cache", "matchbox-e2e")
}

// testOSInputs are the files whose content decides the test OS bytes.
var testOSInputs = []string{"os-assets/build-testos", "e2e-libvirt/cmd", "cmd/matchbox-agent", "hardware", "go.mod", "go.sum"}

// testOS is the kernel and initramfs of os-assets/build-testos.
type testOS struct {
	Kernel, Initrd string
}

var testOSOnce struct {
	sync.Once
	os  testOS
	err error
}

// buildTestOS builds the test OS once per run, reusing the cached build of
// the same inputs from earlier runs.
func buildTestOS(t testing.TB) testOS {
	t.Helper()
	testOSOnce.Do(func() {
		root := repoRoot(t)
		key, err := hashTree(root, testOSInputs)
		if err != nil {
			testOSOnce.err = err
			return
		}
		dest := filepath.Join(cacheDir(t), "testos-"+key[:16])
		out := testOS{Kernel: filepath.Join(dest, "testos", "vmlinuz"), Initrd: filepath.Join(dest, "testos", "initramfs.cpio.gz")}
		if fileExists(out.Kernel) && fileExists(out.Initrd) {
			t.Logf("test OS: cached in %s", dest)
			testOSOnce.os = out
			return
		}
		start := time.Now()
		tmp := dest + ".tmp"
		os.RemoveAll(tmp)
		cmd := exec.Command(filepath.Join(root, "os-assets", "build-testos"), tmp)
		cmd.Env = append(os.Environ(), "CACHE_DIR="+filepath.Join(cacheDir(t), "debs"))
		if b, err := cmd.CombinedOutput(); err != nil {
			testOSOnce.err = fmt.Errorf("os-assets/build-testos: %v: %s", err, b)
			return
		}
		if err := os.RemoveAll(dest); err != nil {
			testOSOnce.err = err
			return
		}
		if err := os.Rename(tmp, dest); err != nil {
			testOSOnce.err = fmt.Errorf("test OS cache: %w", err)
			return
		}
		t.Logf("test OS: built in %s into %s", time.Since(start).Round(time.Millisecond), dest)
		testOSOnce.os = out
	})
	if testOSOnce.err != nil {
		t.Fatalf("test OS: %v", testOSOnce.err)
	}
	return testOSOnce.os
}

var matchboxOnce struct {
	sync.Once
	path string
	help string
	err  error
}

// buildMatchbox builds cmd/matchbox once per run (or takes the binary
// E2E_MATCHBOX names) and returns the binary and the text of
// `serve --help` (to tell which services it offers).
func buildMatchbox(t testing.TB) (bin, serveHelp string) {
	t.Helper()
	matchboxOnce.Do(func() {
		if bin := os.Getenv("E2E_MATCHBOX"); bin != "" {
			help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
			if err != nil {
				matchboxOnce.err = fmt.Errorf("E2E_MATCHBOX=%s serve --help: %v: %s", bin, err, help)
				return
			}
			matchboxOnce.path, matchboxOnce.help = bin, string(help)
			return
		}
		dir, err := os.MkdirTemp("", "matchbox-e2e-bin-")
		if err != nil {
			matchboxOnce.err = err
			return
		}
		// The binary serves every test of the run: removed at exit.
		addRunCleanup(func() { os.RemoveAll(dir) })
		bin := filepath.Join(dir, "matchbox")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/matchbox")
		cmd.Dir = repoRoot(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			matchboxOnce.err = fmt.Errorf("go build ./cmd/matchbox: %v: %s", err, b)
			return
		}
		help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
		if err != nil {
			matchboxOnce.err = fmt.Errorf("matchbox serve --help: %v: %s", err, help)
			return
		}
		matchboxOnce.path, matchboxOnce.help = bin, string(help)
	})
	if matchboxOnce.err != nil {
		t.Fatalf("matchbox: %v", matchboxOnce.err)
	}
	return matchboxOnce.path, matchboxOnce.help
}

// ipxeBinaries are the boot binaries from Debian's ipxe package put in the
// TFTP root.
var ipxeBinaries = []string{"ipxe.efi", "snponly.efi", "undionly.kpxe"}

// writeAssets fills dir with the test OS (dir/testos/) and the iPXE
// binaries (dir/tftp/), returning the TFTP root.
func writeAssets(t testing.TB, dir string, tos testOS) string {
	t.Helper()
	mustCopy(t, tos.Kernel, filepath.Join(dir, "testos", "vmlinuz"))
	mustCopy(t, tos.Initrd, filepath.Join(dir, "testos", "initramfs.cpio.gz"))
	tftp := filepath.Join(dir, "tftp")
	for _, name := range ipxeBinaries {
		mustCopy(t, filepath.Join("/usr/lib/ipxe", name), filepath.Join(tftp, name))
	}
	return tftp
}

// hashTree hashes the names and contents of the files under paths
// (relative to root), in sorted order.
func hashTree(root string, paths []string) (string, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(filepath.Join(root, p), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func mustCopy(t testing.TB, src, dst string) {
	t.Helper()
	if err := copyFile(src, dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// outDir returns the folder where t keeps its logs: removed when t passes
// (unless E2E_KEEP is set), kept and named when it fails.
func outDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("E2E_OUT_DIR")
	if base == "" {
		base = filepath.Join(repoRoot(t), "e2e-libvirt", "out")
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(base, runID, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("output folder: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			return
		}
		if os.Getenv("E2E_KEEP") != "" {
			t.Logf("logs in %s", dir)
			return
		}
		os.RemoveAll(dir)
		os.Remove(filepath.Join(base, runID))
	})
	return dir
}

// runID names this run's output folder.
var runID = time.Now().UTC().Format("20060102T150405Z") + fmt.Sprintf("-%d", os.Getpid())

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}
