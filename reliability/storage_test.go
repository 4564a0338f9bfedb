package reliability

import (
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

	"matchbox/internal/faultfs"
	"matchbox/internal/fulldisktest"
	"matchbox/internal/needs"
	"matchbox/internal/netnstest"
)

// tftpPayload is the boot binary the storage test serves over TFTP.
var tftpPayload = strings.Repeat("undionly.kpxe ", 300)

// knownMAC is the machine the storage test's data directory has a group for.
const knownMAC = "52:54:00:aa:00:01"

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
	mnt := fulldisktest.Mount(t, "4m")
	srv := startOnStorage(t, l, dir, mnt)
	if _, err := netnstest.Udhcpc(t, l.cli, "c0", "-t", "4", "-T", "1"); err != nil {
		t.Fatalf("before the disk is full: %v", err)
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/before", bigProfile("before")); code/100 != 2 {
		t.Fatalf("a write before the disk is full: %d %s", code, body)
	}

	filler := fulldisktest.Fill(t, mnt)
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
	waitHealthy(t, srv, "space returned")
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

// term stops the server with SIGTERM (a clean shutdown) and waits for it.
func (s *server) term() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.t.Fatalf("matchbox did not stop within 15s of SIGTERM: %s", s.tail())
	}
	s.cmd = nil
}

// TestFullDiskAtStart starts matchbox serve on a full disk whose database
// holds a catalog while the data directory holds more: the start must not
// stop on the import it cannot write.
//   - serve starts and answers /healthz "degraded: storage_full" (the
//     gauge is 1), logs that the data directory was not imported;
//   - the boot endpoints serve what the database holds (the known
//     machine's profile), not the unwritten import; API writes answer 507;
//   - once the fill file is removed, without a restart: /healthz is ok,
//     the import is written (the new machine's profile is served and
//     listed by the API), writes succeed, and the database is intact.
func TestFullDiskAtStart(t *testing.T) {
	needBinaries(t)
	needRoot(t, "mount", "umount", "sqlite3")
	ns := netnstest.New(t, "relf")
	dir := t.TempDir()
	writeFiles := func(files map[string]string) {
		for name, body := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFiles(map[string]string{
		"profiles/p.json":   `{"id": "p", "boot": {"kernel": "/assets/vmlinuz"}}`,
		"groups/known.json": `{"id": "known", "profile": "p", "selector": {"mac": "` + knownMAC + `"}}`,
	})
	mnt := fulldisktest.Mount(t, "4m")
	srv := newServer(t, ns, dir, "127.0.0.1:8080")
	srv.db = filepath.Join(mnt, "matchbox.db")
	srv.args = append(srv.args, "--db", srv.db) // the last --db wins
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log: %s", srv.tail())
		}
	})
	srv.start()
	srv.term()
	// A clean stop leaves neither the WAL nor its index: the next start
	// has to create them, on a full disk.
	for _, f := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(srv.db + f); err == nil {
			t.Fatalf("%s%s left after a clean stop", srv.db, f)
		}
	}
	const newMAC = "52:54:00:aa:00:02"
	writeFiles(map[string]string{
		"profiles/p2.json":   `{"id": "p2", "boot": {"kernel": "/assets/vmlinuz2"}}`,
		"groups/second.json": `{"id": "second", "profile": "p2", "selector": {"mac": "` + newMAC + `"}}`,
	})
	filler := fulldisktest.Fill(t, mnt)

	srv.start() // fails the test if matchbox exits or /healthz is not 200
	code, body := srv.get("/healthz")
	if code != http.StatusOK || !strings.HasPrefix(body, "degraded: storage_full") {
		t.Fatalf("/healthz after a start on a full disk: %d %q", code, body)
	}
	if v := srv.metric(t, `matchbox_store_degraded{reason="storage_full"}`); v != 1 {
		t.Fatalf(`matchbox_store_degraded{reason="storage_full"} = %v, want 1`, v)
	}
	if log := srv.tail(); !strings.Contains(log, "data directory not imported") || !strings.Contains(log, "database opened read-only") {
		t.Fatalf("the log does not say the database was opened read-only and the data directory not imported: %s", log)
	}
	if code, body := srv.get("/ipxe?mac=" + knownMAC); code != http.StatusOK || !strings.Contains(body, "/assets/vmlinuz\n") {
		t.Fatalf("/ipxe of the known machine on a full disk: %d %s", code, body)
	}
	if code, body := srv.get("/ipxe?mac=" + newMAC); code == http.StatusOK || strings.Contains(body, "vmlinuz2") {
		t.Fatalf("/ipxe of the machine of the unwritten import: %d %s", code, body)
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/w", `{"id": "w", "boot": {"kernel": "/k"}}`); code != http.StatusInsufficientStorage || !strings.Contains(body, `"storage_full"`) {
		t.Fatalf("PUT on a full disk: %d %s, want 507 storage_full", code, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = srv.get("/healthz")
		ipxeCode, ipxe := srv.get("/ipxe?mac=" + newMAC)
		if code == http.StatusOK && body == "ok\n" && ipxeCode == http.StatusOK && strings.Contains(ipxe, "/assets/vmlinuz2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after space returned: /healthz %d %q, /ipxe of the new machine %d %q", code, body, ipxeCode, ipxe)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := srv.get("/api/v1/profiles/p2"); code != http.StatusOK {
		t.Fatalf("GET of the imported profile p2: %d %s", code, body)
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/w", `{"id": "w", "boot": {"kernel": "/k"}}`); code/100 != 2 {
		t.Fatalf("PUT after space returned: %d %s", code, body)
	}
	srv.term()
	integrityOK(t, srv.db)
}

// TestStorageFailsUnderARunningServer puts the database on a FUSE loopback
// (internal/faultfs) and, while matchbox serve runs, makes its writes fail
// as a file system remounted read-only does (EROFS), then as a failing
// disk does (EIO). Each time:
//   - API writes answer 503 storage_unavailable and store nothing;
//   - /healthz says "degraded: storage_unavailable", the gauge is 1;
//   - the boot endpoints (/ipxe of the known machine, /boot.ipxe) answer
//     200 and TFTP serves its file;
//   - a new DHCP client gets no lease, the drops are counted under
//     storage_unavailable;
//   - once writes pass again, without a restart: /healthz is ok, the
//     refused write succeeds, the client gets a lease the store holds.
//
// At the end the database is intact (integrity_check).
func TestStorageFailsUnderARunningServer(t *testing.T) {
	needBinaries(t)
	needRoot(t, "busybox", "sqlite3")
	if err := faultfs.Available(); err != nil {
		needs.Skipf(t, "needs FUSE to fail the database's writes on demand: %v", err)
	}
	l := newLab(t, 3)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"profiles/p.json":           `{"id": "p", "boot": {"kernel": "/assets/vmlinuz"}}`,
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
	backing, mnt := t.TempDir(), t.TempDir()
	ffs, err := faultfs.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the server's stop, registered later
		ffs.Fail(0)
		if err := ffs.Unmount(); err != nil {
			t.Error(err)
		}
	})
	srv := startOnStorage(t, l, dir, mnt)
	if _, err := netnstest.Udhcpc(t, l.cli, "c0", "-t", "4", "-T", "1"); err != nil {
		t.Fatalf("before the storage fails: %v", err)
	}
	netnstest.IP(t, "-n", l.cli, "addr", "add", "10.77.0.50/16", "dev", "c0") // for TFTP
	const smallProfile = `{"id": %q, "boot": {"kernel": "/assets/k"}}`
	for i, fault := range []struct {
		errno  syscall.Errno
		client string
	}{{syscall.EROFS, "c1"}, {syscall.EIO, "c2"}} {
		ffs.Fail(fault.errno)
		t.Logf("the database's writes fail with %v", fault.errno)
		id := fmt.Sprintf("refused-%d", i)
		code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/"+id, fmt.Sprintf(smallProfile, id))
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"storage_unavailable"`) || !strings.Contains(body, "nothing was stored") {
			t.Fatalf("PUT with writes failing (%v): %d %s, want 503 storage_unavailable", fault.errno, code, body)
		}
		if code, body := srv.get("/api/v1/profiles/" + id); code != http.StatusNotFound {
			t.Fatalf("GET of the refused profile %s: %d %s, want 404", id, code, body)
		}
		code, body = srv.get("/healthz")
		if code != http.StatusOK || !strings.HasPrefix(body, "degraded: storage_unavailable") {
			t.Fatalf("/healthz with writes failing (%v): %d %q", fault.errno, code, body)
		}
		if v := srv.metric(t, `matchbox_store_degraded{reason="storage_unavailable"}`); v != 1 {
			t.Fatalf(`matchbox_store_degraded{reason="storage_unavailable"} = %v, want 1`, v)
		}
		for _, path := range []string{"/ipxe?mac=" + knownMAC, "/boot.ipxe"} {
			code, body := srv.get(path)
			if code != http.StatusOK || (strings.HasPrefix(path, "/ipxe") && !strings.Contains(body, "/assets/vmlinuz")) {
				t.Fatalf("%s with writes failing (%v): %d %s", path, fault.errno, code, body)
			}
		}
		got := filepath.Join(t.TempDir(), "undionly.kpxe")
		if out, err := exec.Command("ip", "netns", "exec", l.cli, "busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", got, serverIP).CombinedOutput(); err != nil {
			t.Fatalf("TFTP with writes failing: %v: %s", err, out)
		}
		if b, err := os.ReadFile(got); err != nil || string(b) != tftpPayload {
			t.Fatalf("TFTP with writes failing got %d bytes (%v), want the %d of the file", len(b), err, len(tftpPayload))
		}
		dropsBefore := srv.metric(t, `matchbox_dhcp_dropped_total{reason="storage_unavailable"}`)
		if env, err := netnstest.Udhcpc(t, l.cli, fault.client, "-t", "3", "-T", "1"); err == nil {
			t.Fatalf("a new client got lease %s while the database's writes fail (%v)", env["ip"], fault.errno)
		}
		if d := srv.metric(t, `matchbox_dhcp_dropped_total{reason="storage_unavailable"}`); d <= dropsBefore {
			t.Fatalf(`matchbox_dhcp_dropped_total{reason="storage_unavailable"} %v, was %v: the refused DISCOVERs were not counted`, d, dropsBefore)
		}

		// The storage works again: no restart.
		ffs.Fail(0)
		waitHealthy(t, srv, "writes pass again")
		if v := srv.metric(t, `matchbox_store_degraded{reason="storage_unavailable"}`); v != 0 {
			t.Fatalf(`matchbox_store_degraded{reason="storage_unavailable"} after recovery = %v`, v)
		}
		if code, body := apiDo(srv, http.MethodPut, "/api/v1/profiles/"+id, fmt.Sprintf(smallProfile, id)); code/100 != 2 {
			t.Fatalf("PUT %s after writes pass again: %d %s", id, code, body)
		}
		env, err := netnstest.Udhcpc(t, l.cli, fault.client, "-t", "4", "-T", "1")
		if err != nil {
			t.Fatalf("after writes pass again: %v", err)
		}
		code, body = srv.get("/api/v1/leases?ip=" + env["ip"])
		if code != http.StatusOK || !strings.Contains(body, env["ip"]) {
			t.Fatalf("lease %s of the new client not stored: %d %s", env["ip"], code, body)
		}
		// The command line lists it too, by the client's MAC.
		mac := strings.TrimSpace(run(t, "ip", "-n", l.cli, "-br", "link", "show", fault.client))
		if f := strings.Fields(mac); len(f) >= 3 {
			mac = f[2]
		}
		out, err := exec.Command("ip", "netns", "exec", l.srv, bins.matchbox, "get", "leases", "--mac", mac, "--endpoint", srv.base).CombinedOutput()
		if err != nil || !strings.Contains(string(out), env["ip"]) {
			t.Fatalf("matchbox get leases --mac %s: %v: %s, want the lease on %s", mac, err, out, env["ip"])
		}
	}
	srv.term()
	integrityOK(t, filepath.Join(backing, "matchbox.db"))
}

// startOnStorage starts an authoritative server of the lab l (DHCP, TFTP,
// HTTP) on the data directory dir, with its database under mnt (the
// storage the test makes fail), and logs the server's tail if the test
// fails.
func startOnStorage(t *testing.T, l *lab, dir, mnt string) *server {
	t.Helper()
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
	return srv
}

// waitHealthy waits up to 10 s for srv's /healthz to answer "ok" after
// the storage recovered (after names how), and fails the test otherwise.
func waitHealthy(t *testing.T, srv *server, after string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := srv.get("/healthz")
		if code == http.StatusOK && body == "ok\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz 10s after %s: %d %q", after, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
