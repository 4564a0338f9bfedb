package reliability

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"matchbox/internal/netnstest"
)

// tftpPayload is the boot binary the storage test serves over TFTP.
var tftpPayload = strings.Repeat("undionly.kpxe ", 300)

// knownMAC is the machine the storage test's data directory has a group for.
const knownMAC = "52:54:00:aa:00:01"

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it
// when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// fill writes a file in dir until the filesystem has no space left.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for size := len(buf); size > 0; {
		if _, err := f.Write(buf[:size]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			size /= 2 // the last bytes
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := st.Bavail * uint64(st.Bsize); free != 0 {
		t.Fatalf("%s: %d bytes still free after filling", dir, free)
	}
	return path
}

// get fetches path and returns its status and body.
func (s *server) get(path string) (int, string) {
	resp, err := s.client.Get(s.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample of /metrics whose name and labels
// are exactly series (`name{label="v"}`), or -1 when there is none.
func (s *server) metric(t *testing.T, series string) float64 {
	t.Helper()
	code, body := s.get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// bigProfile is a profile whose kernel arguments make its row about 200
// KiB, more than a write-ahead log of a fresh database holds.
func bigProfile(id string) string {
	return fmt.Sprintf(`{"id": %q, "boot": {"kernel": "/assets/k", "args": [%q]}}`, id, strings.Repeat("x", 200<<10))
}

// TestFullDisk puts the database on a tmpfs of its own, fills the tmpfs
// and checks what matchbox serve promises on a full disk, then frees the
// space and checks that it recovers without a restart:
//   - API writes answer 507 storage_full and store nothing; the CLI's
//     apply exits non-zero naming the full disk;
//   - /healthz says "degraded: storage_full", /metrics has
//     matchbox_store_degraded{reason="storage_full"} 1;
//   - the boot endpoints (/ipxe for a known machine, /boot.ipxe) answer
//     200 from the in-memory catalog, and TFTP serves its file;
//   - a new DHCP client (busybox udhcpc in a namespace) gets no lease and
//     the drop is counted under storage_full;
//   - once the fill file is removed: /healthz is ok again, the refused
//     write succeeds, the client gets a lease that the store holds.
func TestFullDisk(t *testing.T) {
	needBinaries(t)
	needRoot(t, "busybox", "mount", "umount")
	l := newLab(t, 2)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"profiles/p.json":           `{"id": "p", "name": "p", "boot": {"kernel": "/assets/vmlinuz", "initrd": ["/assets/initrd"], "args": ["console=ttyS0"]}}`,
		"groups/known.json":         `{"id": "known", "profile": "p", "selector": {"mac": "` + knownMAC + `"}}`,
		"assets/tftp/undionly.kpxe": tftpPayload,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := mountTmpfs(t, "4m")
	srv := newServer(t, l.srv, dir, "0.0.0.0:8080",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "br0", "--dhcp-range", dhcpRange,
		"--dhcp-lease-time", "1h", "--boot-url", "http://"+serverIP+":8080", "--tftp-addr", serverIP+":69")
	srv.db = filepath.Join(mnt, "matchbox.db")
	srv.args = append(srv.args, "--db", srv.db) // the last --db wins
	srv.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log: %s", srv.tail())
		}
	})
	if _, err := netnstest.Udhcpc(t, l.cli, "c0", "-t", "4", "-T", "1"); err != nil {
		t.Fatalf("before the disk is full: %v", err)
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/before", bigProfile("before")); code/100 != 2 {
		t.Fatalf("a write before the disk is full: %d %s", code, body)
	}

	filler := fill(t, mnt)
	t.Logf("%s filled", mnt)

	// Writes that fit in pages SQLite already holds may still succeed;
	// the first that needs more must be refused, and not be stored.
	refused := ""
	for i := range 20 {
		id := fmt.Sprintf("full-%d", i)
		code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/"+id, bigProfile(id))
		if code/100 == 2 {
			continue
		}
		if code != http.StatusInsufficientStorage || !strings.Contains(body, `"storage_full"`) || !strings.Contains(body, "nothing was stored") {
			t.Fatalf("PUT %s on a full disk: %d %s, want 507 storage_full", id, code, body)
		}
		refused = id
		break
	}
	if refused == "" {
		t.Fatal("20 writes of 200 KiB succeeded on a full 4 MiB tmpfs")
	}
	if code, body := srv.get("/api/v1/profiles/" + refused); code != http.StatusNotFound {
		t.Fatalf("GET of the refused profile %s: %d %s, want 404", refused, code, body)
	}
	// The CLI says why.
	applyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(applyDir, "cli.json"), []byte(bigProfile("cli")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", l.srv, bins.matchbox, "apply", "--auto-approve", "-f", filepath.Join(applyDir, "cli.json"), "--endpoint", srv.base).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "disk is full") {
		t.Fatalf("matchbox apply on a full disk: %v: %s", err, out)
	}
	t.Logf("matchbox apply on a full disk: %v: %s", err, strings.TrimSpace(string(out)))

	code, body := srv.get("/healthz")
	if code != http.StatusOK || !strings.HasPrefix(body, "degraded: storage_full") {
		t.Fatalf("/healthz on a full disk: %d %q", code, body)
	}
	if v := srv.metric(t, `matchbox_store_degraded{reason="storage_full"}`); v != 1 {
		t.Fatalf(`matchbox_store_degraded{reason="storage_full"} = %v, want 1`, v)
	}
	for _, path := range []string{"/ipxe?mac=" + knownMAC, "/boot.ipxe"} {
		code, body := srv.get(path)
		if code != http.StatusOK || (strings.HasPrefix(path, "/ipxe") && !strings.Contains(body, "/assets/vmlinuz")) {
			t.Fatalf("%s on a full disk: %d %s", path, code, body)
		}
	}
	// TFTP serves from the assets directory, whatever the store.
	netnstest.IP(t, "-n", l.cli, "addr", "add", "10.77.0.50/16", "dev", "c0")
	got := filepath.Join(t.TempDir(), "undionly.kpxe")
	if out, err := exec.Command("ip", "netns", "exec", l.cli, "busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", got, serverIP).CombinedOutput(); err != nil {
		t.Fatalf("TFTP on a full disk: %v: %s", err, out)
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != tftpPayload {
		t.Fatalf("TFTP on a full disk got %d bytes (%v), want the %d of the file", len(b), err, len(tftpPayload))
	}
	dropsBefore := srv.metric(t, `matchbox_dhcp_dropped_total{reason="storage_full"}`)
	if env, err := netnstest.Udhcpc(t, l.cli, "c1", "-t", "3", "-T", "1"); err == nil {
		t.Fatalf("a new client got lease %s on a full disk", env["ip"])
	}
	if d := srv.metric(t, `matchbox_dhcp_dropped_total{reason="storage_full"}`); d <= dropsBefore {
		t.Fatalf(`matchbox_dhcp_dropped_total{reason="storage_full"} %v, was %v: the refused DISCOVERs were not counted`, d, dropsBefore)
	}

	// Space returns: no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = srv.get("/healthz")
		if code == http.StatusOK && body == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz 10s after space returned: %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := srv.metric(t, `matchbox_store_degraded{reason="storage_full"}`); v != 0 {
		t.Fatalf(`matchbox_store_degraded{reason="storage_full"} after recovery = %v`, v)
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/"+refused, bigProfile(refused)); code/100 != 2 {
		t.Fatalf("PUT %s after space returned: %d %s", refused, code, body)
	}
	env, err := netnstest.Udhcpc(t, l.cli, "c1", "-t", "4", "-T", "1")
	if err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	code, body = srv.get("/api/v1/leases?ip=" + env["ip"])
	if code != http.StatusOK || !strings.Contains(body, env["ip"]) {
		t.Fatalf("lease %s of the new client not stored: %d %s", env["ip"], code, body)
	}
}
