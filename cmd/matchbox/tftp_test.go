package main

import (
	"bytes"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestServeTFTP downloads a file from the real binary's TFTP server with
// curl, and checks that an escape is refused.
func TestServeTFTP(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	if out, _ := exec.Command("curl", "--version").Output(); !bytes.Contains(out, []byte("tftp")) {
		t.Skip("this curl has no tftp:// support")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "tftp")
	os.MkdirAll(root, 0o755)
	want := make([]byte, 300_000)
	rand.Read(want)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644)

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	startServer(t, "--data-dir", filepath.Join(dir, "data"), "--tftp-addr", "127.0.0.1:"+strconv.Itoa(port), "--tftp-root", root)

	url := "tftp://127.0.0.1:" + strconv.Itoa(port)
	got, err := exec.Command("curl", "-fsS", "--tftp-blksize", "1468", url+"/undionly.kpxe").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, not the file's %d", len(got), len(want))
	}
	// --path-as-is: curl sends "../secret" instead of squashing it.
	out, err := exec.Command("curl", "-sS", "--path-as-is", url+"/../secret").CombinedOutput()
	if err == nil || bytes.Contains(out, []byte("secret")) {
		t.Fatalf("escape served: %v %q", err, out)
	}
}
