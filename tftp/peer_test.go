package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/internal/needs"
)

// Real peers: curl's tftp:// and the tftp-hpa client, as found on Debian
// (apt-get install curl tftp-hpa). Each test skips, saying why, when its
// client is missing.

func needCurlTFTP(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		needs.Skip(t, "curl not installed (apt-get install curl): real-peer test skipped")
	}
	out, err := exec.Command(p, "-V").Output()
	if err != nil || !bytes.Contains(out, []byte(" tftp")) {
		needs.Skip(t, "this curl has no tftp:// support: real-peer test skipped")
	}
	return p
}

func needTFTPHPA(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tftp")
	if err != nil {
		needs.Skip(t, "tftp-hpa client not installed (apt-get install tftp-hpa): real-peer test skipped")
	}
	out, _ := exec.Command(p, "-V").CombinedOutput()
	if !bytes.Contains(out, []byte("tftp-hpa")) {
		needs.Skipf(t, "%s is not the tftp-hpa client (%q): real-peer test skipped", p, firstLine(out))
	}
	return p
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func run(t *testing.T, dir, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return out, err
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	must(t, err)
	return h, p
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	must(t, err)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: sha256 %x (%d bytes), want %x (%d bytes)", filepath.Base(path),
			sha256.Sum256(got), len(got), sha256.Sum256(want), len(want))
	}
}

// notLeaked fails when path exists and holds the secret from outside the root.
func notLeaked(t *testing.T, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		t.Fatalf("%s: got %d bytes (%q) for an escaping name", filepath.Base(path), len(b), firstBytes(b))
	}
}

func TestPeerCurl(t *testing.T) {
	curl := needCurlTFTP(t)
	e := newEnv(t, nil)
	out := t.TempDir()
	base := "tftp://" + e.addr + "/"
	for _, bs := range []string{"1468", "512", "8192"} {
		dst := filepath.Join(out, "undionly-"+bs)
		if o, err := run(t, out, curl, "-sS", "--tftp-blksize", bs, "-o", dst, base+"undionly.kpxe"); err != nil {
			t.Fatalf("curl blksize %s: %v\n%s", bs, err, o)
		}
		sameFile(t, dst, e.boot)
	}
	trs := e.waitTransfers(t, 3)
	for i, bs := range []int{1468, 512, 8192} {
		if tr := trs[i]; tr.Err != nil || tr.BlockSize != bs || !tr.TSize {
			t.Errorf("curl transfer %d: %+v", i, tr)
		}
	}

	// Escapes: --path-as-is keeps curl from folding the .. away itself.
	for i, name := range []string{"../outside/secret.txt", "%2e%2e/outside/secret.txt", "escape-rel", "escape-abs"} {
		dst := filepath.Join(out, "escape"+string(rune('a'+i)))
		o, err := run(t, out, curl, "-sS", "--path-as-is", "-o", dst, base+name)
		if err == nil {
			t.Errorf("curl %s: succeeded, want refusal\n%s", name, o)
		}
		notLeaked(t, dst)
	}
	trs = e.waitTransfers(t, 7)
	for _, tr := range trs[3:] {
		if !errors.Is(tr.Err, ErrAccessViolation) || tr.BytesSent != 0 {
			t.Errorf("escape transfer %+v", tr)
		}
	}
}

func TestPeerTFTPHPA(t *testing.T) {
	tftp := needTFTPHPA(t)
	e := newEnv(t, nil)
	host, port := hostPort(t, e.addr)
	out := t.TempDir()

	dst := filepath.Join(out, "undionly.kpxe")
	o, err := run(t, out, tftp, host, port, "-m", "binary", "-c", "get", "undionly.kpxe", dst)
	if err != nil || len(bytes.TrimSpace(o)) != 0 {
		t.Fatalf("tftp get: %v\n%s", err, o)
	}
	sameFile(t, dst, e.boot)
	if tr := e.waitTransfers(t, 1)[0]; tr.Err != nil || tr.Mode != "octet" || tr.BytesSent != int64(len(e.boot)) {
		t.Fatalf("tftp-hpa transfer %+v", tr)
	}

	// netascii: the client turns CRLF back into LF.
	must(t, os.WriteFile(filepath.Join(e.root, "boot.txt"), []byte("#!ipxe\nchain http://x/boot.ipxe\n"), 0o644))
	dst = filepath.Join(out, "boot.txt")
	if o, err := run(t, out, tftp, host, port, "-m", "ascii", "-c", "get", "boot.txt", dst); err != nil {
		t.Fatalf("tftp get ascii: %v\n%s", err, o)
	}
	sameFile(t, dst, []byte("#!ipxe\nchain http://x/boot.ipxe\n"))

	for i, name := range []string{"../outside/secret.txt", `..\outside\secret.txt`, "escape-rel", "outdir/secret.txt"} {
		dst := filepath.Join(out, "escape"+string(rune('a'+i)))
		o, _ := run(t, out, tftp, host, port, "-m", "binary", "-c", "get", name, dst)
		if !bytes.Contains(o, []byte("Access violation")) {
			t.Errorf("tftp get %s: %q, want an Access violation error", name, o)
		}
		notLeaked(t, dst)
	}

	// Writes are refused and create nothing.
	src := filepath.Join(out, "upload.bin")
	must(t, os.WriteFile(src, []byte("upload"), 0o644))
	o, _ = run(t, out, tftp, host, port, "-m", "binary", "-c", "put", src, "upload.bin")
	if !bytes.Contains(o, []byte("read-only")) {
		t.Errorf("tftp put: %q, want a read-only refusal", o)
	}
	if _, err := os.Stat(filepath.Join(e.root, "upload.bin")); err == nil {
		t.Error("upload.bin was created in the root")
	}
	trs := e.waitTransfers(t, 7)
	for _, tr := range trs[2:6] {
		if !errors.Is(tr.Err, ErrAccessViolation) {
			t.Errorf("escape transfer %+v", tr)
		}
	}
	if !trs[6].Write || !errors.Is(trs[6].Err, ErrReadOnly) {
		t.Errorf("write transfer %+v", trs[6])
	}
}
