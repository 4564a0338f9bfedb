package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tftpAnswer is what a TFTP server said to one request packet: the
// opcode of its first answer (0: silence), an ERROR's code and message,
// and a DATA packet's block and payload.
type tftpAnswer struct {
	Op    uint16
	Code  uint16
	Msg   string
	Block uint16
	Data  []byte
}

func (a tftpAnswer) String() string {
	switch a.Op {
	case 0:
		return "silence"
	case 5:
		return fmt.Sprintf("ERROR %d %q", a.Code, a.Msg)
	case 3:
		return fmt.Sprintf("DATA block %d, %d bytes", a.Block, len(a.Data))
	case 6:
		return fmt.Sprintf("OACK %q", a.Data)
	}
	return fmt.Sprintf("opcode %d", a.Op)
}

// tftpAsk sends pkt from a fresh UDP socket to addr and returns the first
// answer within wait (silence if none). A DATA or OACK answer is answered
// with an ERROR, so that the server's transfer ends at once.
func tftpAsk(t *testing.T, addr string, pkt []byte, wait time.Duration) tftpAnswer {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(pkt, dst); err != nil {
		t.Fatalf("send %d bytes: %v", len(pkt), err)
	}
	buf := make([]byte, 70000)
	c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return tftpAnswer{}
	}
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if n < 4 {
		t.Fatalf("a %d-byte answer", n)
	}
	a := tftpAnswer{Op: binary.BigEndian.Uint16(buf)}
	switch a.Op {
	case 5:
		a.Code = binary.BigEndian.Uint16(buf[2:])
		a.Msg = string(bytes.TrimRight(buf[4:n], "\x00"))
	case 3:
		a.Block = binary.BigEndian.Uint16(buf[2:])
		a.Data = append([]byte(nil), buf[4:n]...)
	case 6:
		a.Data = append([]byte(nil), buf[2:n]...)
	}
	if a.Op == 3 || a.Op == 6 {
		c.WriteTo([]byte("\x00\x05\x00\x00stop\x00"), from)
	}
	return a
}

// rrq is a TFTP read request: filename, mode, then option/value strings.
func rrq(parts ...string) []byte {
	b := []byte{0, 1}
	for _, p := range parts {
		b = append(append(b, p...), 0)
	}
	return b
}

// TestServeHostileTFTP sends the real binary's TFTP server raw read
// requests that try to leave the root, carry NUL bytes, 64 KiB names, bad
// modes and options, and packets that are no request at all: each gets
// the answer it must (an ERROR with the code and text, or silence), and a
// normal request is served afterwards.
func TestServeHostileTFTP(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "tftp")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), []byte("IPXE-BINARY"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("SECRET"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "escape"))
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	s := startServer(t, "--data-dir", filepath.Join(dir, "data"), "--db", filepath.Join(dir, "m.db"), "--tftp-addr", addr, "--tftp-root", root)

	long := strings.Repeat("a", 65000)
	const (
		silence = "silence"
		served  = "DATA block 1, 11 bytes" // undionly.kpxe, in octet mode, 512-byte blocks
		denied  = `ERROR 1 "Access violation"`
		missing = `ERROR 1 "File not found"`
	)
	// pin/tftp sends every error with code 1 and the server's text (see
	// package tftp): the text says which refusal it is.
	tests := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"dot-dot", rrq("../secret", "octet"), denied},
		{"dot-dot inside", rrq("x/../undionly.kpxe", "octet"), denied},
		{"backslash dot-dot", rrq(`..\secret`, "octet"), denied},
		{"absolute: looked up under the root", rrq("/etc/passwd", "octet"), missing},
		{"absolute path of a file outside", rrq(dir+"/secret", "octet"), missing},
		{"symlink out of the root", rrq("escape", "octet"), denied},
		{"empty name", rrq("", "octet"), denied},
		// A NUL ends the name: what follows is the mode, and pin/tftp
		// serves any mode but netascii as octet.
		{"NUL inside the name", append(append([]byte{0, 1}, "undionly.kpxe\x00../secret\x00octet"...), 0), served},
		{"bad mode", rrq("undionly.kpxe", "binary"), served},
		{"no mode", rrq("undionly.kpxe"), served},
		{"no terminating NUL", []byte("\x00\x01undionly.kpxe\x00octet"), served},
		// pin reads 516-byte datagrams: the name is cut, has no end, and
		// the request is dropped.
		{"64 KiB name", rrq(long, "octet"), silence},
		// Options out of range or unknown are left out of the answer.
		{"blksize 0", rrq("undionly.kpxe", "octet", "blksize", "0"), served},
		{"blksize huge", rrq("undionly.kpxe", "octet", "blksize", "99999999999999999999"), served},
		{"blksize junk", rrq("undionly.kpxe", "octet", "blksize", "abc"), served},
		{"timeout 0", rrq("undionly.kpxe", "octet", "timeout", "0"), served},
		{"option without value", rrq("undionly.kpxe", "octet", "blksize"), served},
		{"tsize negative: the real size", rrq("undionly.kpxe", "octet", "tsize", "-1"), `OACK "tsize\x0011\x00"`},
		{"write request", append([]byte{0, 2}, "undionly.kpxe\x00octet\x00"...), `ERROR 1 "Access violation: server is read-only"`},
		{"DATA to the server port", []byte("\x00\x03\x00\x01junk"), silence},
		{"ACK to the server port", []byte("\x00\x04\x00\x01"), silence},
		{"ERROR to the server port", []byte("\x00\x05\x00\x01x\x00"), silence},
		{"unknown opcode", []byte("\x00\x63abc\x00"), silence},
		{"one byte", []byte{1}, silence},
		{"empty datagram", []byte{}, silence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tftpAsk(t, addr, tt.pkt, 500*time.Millisecond)
			if a.String() != tt.want {
				t.Errorf("answer %s, want %s", a, tt.want)
			}
			if bytes.Contains(a.Data, []byte("SECRET")) {
				t.Errorf("served the file outside the root")
			}
		})
	}
	// A normal request is still served, whole.
	if a := tftpAsk(t, addr, rrq("undionly.kpxe", "octet"), 5*time.Second); a.Op != 3 || string(a.Data) != "IPXE-BINARY" {
		t.Fatalf("after hostile requests: %s %q", a, a.Data)
	}
	for _, line := range strings.Split(s.Logs(), "\n") {
		if len(line) > 1024 {
			t.Errorf("a %d-byte log line: %.200s", len(line), line)
		}
	}
}
