package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"matchbox/internal/netnstest"
	"matchbox/internal/servetest"

	"github.com/insomniacslk/dhcp/dhcpv4"
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

// dhcpHeader is a 236-byte BOOTP header (op, htype, hlen as given) with
// chaddr 52:54:00:66:00:01, followed by extra.
func dhcpHeader(op, htype, hlen byte, extra ...byte) []byte {
	b := make([]byte, 236)
	b[0], b[1], b[2] = op, htype, hlen
	copy(b[4:8], []byte{1, 2, 3, 4}) // xid
	copy(b[28:34], []byte{0x52, 0x54, 0, 0x66, 0, 1})
	return append(b, extra...)
}

// TestServeHostileDHCP sends the real binary's DHCP server (authoritative,
// in a network namespace, over a veth pair) malformed and truncated
// packets: none gets an answer, each is counted as malformed on /metrics,
// and a well-formed DISCOVER and busybox udhcpc then get an address.
func TestServeHostileDHCP(t *testing.T) {
	netnstest.Require(t, "busybox")
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	pair := netnstest.NewPair(t, "mhost", "10.9.1.1/24")
	srv, cli := pair.Server, pair.Client
	netnstest.IP(t, "-n", cli, "addr", "add", "10.9.1.50/24", "dev", "vC")

	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", srv, bin, "serve", "--data-dir", dir, "--http-addr", "10.9.1.1:8080",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "vS", "--dhcp-range", "10.9.1.100-10.9.1.110",
		"--boot-url", "http://10.9.1.1:8080", "--dhcp-router", "10.9.1.1")
	logs := &lockedLog{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	// The metrics are read from the client's namespace, over the veth.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			nerr := netnstest.Do(cli, func() error { c, err = net.DialTimeout(network, addr, 5*time.Second); return err })
			return c, nerr
		}}}
	malformed := func() int {
		t.Helper()
		resp, err := getRetrying(client, "http://10.9.1.1:8080/metrics", 30*time.Second)
		if err != nil {
			t.Fatalf("metrics: %v\nserver logs:\n%s", err, logs)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^matchbox_dhcp_dropped_total\{reason="malformed"\} (\d+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no malformed counter on /metrics:\n%s", body)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	if n := malformed(); n != 0 {
		t.Fatalf("%d malformed packets before the test sent any", n)
	}

	var conn *net.UDPConn
	if err := netnstest.Do(cli, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatalf("client socket: %v", err)
	}
	defer conn.Close()
	server := &net.UDPAddr{IP: net.IPv4(10, 9, 1, 1), Port: 67}
	cookie := []byte{99, 130, 83, 99}
	opts := func(o ...byte) []byte { return append(append([]byte{}, cookie...), o...) }
	packets := []struct {
		name string
		pkt  []byte
	}{
		{"empty datagram", nil},
		{"one byte", []byte{1}},
		{"truncated header", make([]byte, 100)},
		{"header without magic cookie", dhcpHeader(1, 1, 6)},
		{"no message type", dhcpHeader(1, 1, 6, opts(255)...)},
		{"option longer than the packet", dhcpHeader(1, 1, 6, opts(53, 1, 1, 12, 200, 'a', 'b')...)},
		{"message type of length 0", dhcpHeader(1, 1, 6, opts(53, 0, 255)...)},
		{"message type of length 0 at the end", dhcpHeader(1, 1, 6, opts(53)...)},
		{"BOOTREPLY", dhcpHeader(2, 1, 6, opts(53, 1, 1, 255)...)},
		{"not Ethernet", dhcpHeader(1, 6, 6, opts(53, 1, 1, 255)...)},
		{"hardware address of 16 bytes", dhcpHeader(1, 1, 16, opts(53, 1, 1, 255)...)},
		{"hardware address of 0 bytes", dhcpHeader(1, 1, 0, opts(53, 1, 1, 255)...)},
		{"only pad options", dhcpHeader(1, 1, 6, append(opts(), make([]byte, 1200)...)...)},
		{"all ones", bytes.Repeat([]byte{0xff}, 1472)},
	}
	rnd := mathrand.New(mathrand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		b := make([]byte, rnd.IntN(1500))
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		packets = append(packets, struct {
			name string
			pkt  []byte
		}{fmt.Sprintf("random %d", i), b})
	}
	// Each truncation of a well-formed DISCOVER short of its options.
	discover, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 0x66, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	whole := discover.ToBytes()
	for n := 0; n < 240; n += 7 {
		packets = append(packets, struct {
			name string
			pkt  []byte
		}{fmt.Sprintf("DISCOVER cut to %d bytes", n), whole[:n]})
	}
	for _, p := range packets {
		if _, err := conn.WriteToUDP(p.pkt, server); err != nil {
			t.Fatalf("%s: send: %v", p.name, err)
		}
	}
	// None gets an answer.
	buf := make([]byte, 1500)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, from, err := conn.ReadFromUDP(buf); err == nil {
		t.Errorf("a malformed packet was answered by %v: %d bytes", from, n)
	}
	if n := malformed(); n != len(packets) {
		t.Errorf("%d packets counted malformed, want the %d sent", n, len(packets))
	}
	// A well-formed DISCOVER is answered with an offer in the range.
	if _, err := conn.WriteToUDP(whole, server); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no offer to a well-formed DISCOVER after the malformed ones: %v\nserver logs:\n%s", err, logs)
	}
	offer, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer || offer.TransactionID != discover.TransactionID {
		t.Fatalf("answer to DISCOVER: %v %v", offer, err)
	}
	if got, _ := netip.AddrFromSlice(offer.YourIPAddr.To4()); got.Compare(netip.MustParseAddr("10.9.1.100")) < 0 || got.Compare(netip.MustParseAddr("10.9.1.110")) > 0 {
		t.Errorf("offered %s, outside --dhcp-range", offer.YourIPAddr)
	}
	conn.Close()
	// And a real client completes its exchange.
	out, err := exec.Command("ip", "netns", "exec", cli, "busybox", "udhcpc", "-i", "vC", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lease of 10.9.1.1") {
		t.Fatalf("udhcpc after the malformed packets: %v\n%s\nserver logs:\n%s", err, out, logs)
	}
}

// lockedLog collects a process's output safely for concurrent readers.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeSlowlorisOnEveryListener trickles a request head one byte a
// half second into every TCP listener (boot HTTP and HTTPS, the API in
// plain HTTP and TLS, HTTP/1.1 and HTTP/2 as gRPC uses it, and the
// profiling endpoints): other clients are served meanwhile, and the slow
// connection is closed once the listener's header timeout has passed, not
// before.
func TestServeSlowlorisOnEveryListener(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for header timeouts of up to 30 s: not with -short")
	}
	pki := servetest.NewPKI(t, "test")
	dir := t.TempDir()
	common := func(name string) []string {
		return []string{"--data-dir", "../..", "--db", filepath.Join(dir, name+".db"), "--agent-key-file", filepath.Join(dir, name+".key"), "--assets-dir", "-", "--api-addr", "127.0.0.1:0"}
	}
	plain := startServer(t, append(common("plain"), "--debug-addr", "127.0.0.1:0")...)
	secure := startServer(t, append(common("tls"), "--http-tls-cert-file", pki.ServerCert, "--http-tls-key-file", pki.ServerKey,
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey)...)
	logged := func(s *server, re string) string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if m := regexp.MustCompile(re).FindStringSubmatch(s.Logs()); m != nil {
				return m[1]
			}
		}
		t.Fatalf("%s not logged:\n%s", re, s.Logs())
		return ""
	}
	plainAPI := logged(plain, `msg="matchbox API serving" addr=(\S+)`)
	debug := logged(plain, `msg="profiling endpoints" addr=(\S+)`)
	secureAPI := logged(secure, `msg="matchbox API serving" addr=(\S+)`)
	secureBoot := strings.TrimPrefix(secure.URL, "http://")

	const head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
	h2Preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	tests := []struct {
		name     string
		addr     string
		alpn     string // "" for plain TCP
		trickle  string
		probe    string // a normal request on the same listener
		deadline time.Duration
	}{
		{"boot HTTP", strings.TrimPrefix(plain.URL, "http://"), "", head, plain.URL + "/healthz", 30 * time.Second},
		{"boot HTTPS", secureBoot, "http/1.1", head, "https://" + secureBoot + "/healthz", 30 * time.Second},
		{"API HTTP", plainAPI, "", head, "http://" + plainAPI + "/api/v1/profiles", 10 * time.Second},
		{"API TLS HTTP/1.1", secureAPI, "http/1.1", head, "https://" + secureAPI + "/api/v1/profiles", 10 * time.Second},
		{"API TLS HTTP/2 (gRPC)", secureAPI, "h2", h2Preface, "https://" + secureAPI + "/api/v1/profiles", 10 * time.Second},
		{"profiling", debug, "", head, "http://" + debug + "/debug/pprof/cmdline", 10 * time.Second},
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client(t)}}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c net.Conn
			var err error
			if tt.alpn == "" {
				c, err = net.DialTimeout("tcp", tt.addr, 5*time.Second)
			} else {
				c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tt.addr, &tls.Config{RootCAs: pki.Pool, NextProtos: []string{tt.alpn}})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			closed := make(chan time.Duration, 1)
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						closed <- time.Since(start)
						return
					}
				}
			}()
			// A byte every half second, the head never finished.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				msg := tt.trickle + strings.Repeat("a", 1000)
				for i := 0; i < len(msg); i++ {
					select {
					case <-stop:
						return
					case <-time.After(500 * time.Millisecond):
					}
					if _, err := c.Write([]byte{msg[i]}); err != nil {
						return
					}
				}
			}()
			// Others are served while the slow client trickles.
			for i := 0; i < 3; i++ {
				time.Sleep(time.Second)
				resp, err := client.Get(tt.probe)
				if err != nil {
					t.Fatalf("GET %s beside the slow client: %v", tt.probe, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("GET %s beside the slow client: %d", tt.probe, resp.StatusCode)
				}
			}
			select {
			case d := <-closed:
				if d < tt.deadline-time.Second {
					t.Errorf("slow client cut after %v, before the header timeout %v", d, tt.deadline)
				}
				t.Logf("slow client cut after %v (header timeout %v)", d.Round(100*time.Millisecond), tt.deadline)
			case <-time.After(tt.deadline + 20*time.Second):
				t.Fatalf("slow client still connected %v after the header timeout %v", 20*time.Second, tt.deadline)
			}
		})
	}
}

// billionLaughs is a group whose metadata (decoded, unlike unknown
// fields) is a YAML alias bomb: 9 levels of 9 aliases, 9^9 strings if
// expanded.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("id: bomb\nprofile: discovery\nselector:\n  mac: 52:54:00:66:66:66\nmetadata:\n")
	b.WriteString("  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		fmt.Fprintf(&b, "  %s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", n, n, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = n
	}
	return b.String()
}

// peakRSS returns a process's peak resident set size in bytes (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// TestServeHostileAPIBodies sends the real server's API bodies nested a
// million deep (JSON and YAML), over the body limit (announced and
// chunked) and YAML alias bombs (as an object and inside an apply
// bundle), and has the command line apply a directory holding a bomb:
// each gets its 4xx with the error code, quickly, the server's memory
// stays bounded and it answers normally afterwards.
func TestServeHostileAPIBodies(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, "--data-dir", "../..", "--db", filepath.Join(dir, "m.db"), "--agent-key-file", filepath.Join(dir, "agent.key"), "--assets-dir", "-")
	bomb := billionLaughs()
	bundle, _ := json.Marshal(map[string]any{"files": map[string]string{"groups/bomb.yaml": bomb}})
	tests := []struct {
		name, method, path, ctype string
		body                      io.Reader
		chunked                   bool
		status                    int
		code                      string // the error's code
	}{
		{"JSON nested a million deep", "POST", "/api/v1/profiles", "application/json", strings.NewReader(strings.Repeat("[", 1_000_000)), false, 400, "invalid_body"},
		{"JSON object nested a million deep", "POST", "/api/v1/profiles", "application/json", strings.NewReader(strings.Repeat(`{"a":`, 200_000)), false, 400, "invalid_body"},
		{"YAML nested a million deep", "POST", "/api/v1/profiles", "application/yaml", strings.NewReader(strings.Repeat("[", 1_000_000)), false, 400, "invalid_body"},
		{"YAML alias bomb", "POST", "/api/v1/groups", "application/yaml", strings.NewReader(bomb), false, 400, "invalid_body"},
		{"YAML alias bomb in an apply bundle", "POST", "/api/v1/apply", "application/json", bytes.NewReader(bundle), false, 400, "invalid_bundle"},
		{"YAML alias bomb in a plan bundle", "POST", "/api/v1/plan", "application/json", bytes.NewReader(bundle), false, 400, "invalid_bundle"},
		{"5 MiB body", "POST", "/api/v1/profiles", "application/json", bytes.NewReader(bytes.Repeat([]byte(" "), 5<<20)), false, 413, "body_too_large"},
		{"5 MiB body, chunked", "POST", "/api/v1/profiles", "application/json", bytes.NewReader(bytes.Repeat([]byte(" "), 5<<20)), true, 413, "body_too_large"},
		{"100 MiB body announced", "POST", "/api/v1/apply", "application/json", io.LimitReader(zeros{}, 100<<20), false, 413, "body_too_large"},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.URL+tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if lr, ok := tt.body.(*io.LimitedReader); ok {
				req.ContentLength = lr.N
			}
			if tt.chunked {
				req.ContentLength = -1
				req.Body = io.NopCloser(req.Body) // hide the length
			}
			req.Header.Set("Content-Type", tt.ctype)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code, Message string }
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			json.Unmarshal(b, &e)
			if resp.StatusCode != tt.status || e.Error.Code != tt.code {
				t.Errorf("%d %s, want %d %s: %.300s", resp.StatusCode, e.Error.Code, tt.status, tt.code, b)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("answered after %v", d)
			}
			t.Logf("%d %s in %v: %.120s", resp.StatusCode, e.Error.Code, time.Since(start).Round(time.Millisecond), e.Error.Message)
		})
	}
	// apply -f of a directory holding a bomb: a clear error, nothing written.
	bombDir := t.TempDir()
	writeFiles(t, bombDir, map[string]string{"groups/bomb.yaml": bomb})
	start := time.Now()
	code, stdout, stderr := runCLI(t, []string{"MATCHBOX_ENDPOINT=" + s.URL}, "apply", "-f", bombDir, "--auto-approve")
	if code == 0 || !strings.Contains(stderr, "bomb.yaml") {
		t.Errorf("apply -f of an alias bomb: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Logf("apply -f of an alias bomb: exit %d in %v: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
	if code, body := httpGet(t, s.URL+"/api/v1/groups/bomb"); code != 404 {
		t.Errorf("the bomb profile was stored: %d %s", code, body)
	}
	if rss := peakRSS(t, s.Cmd.Process.Pid); rss > 400<<20 {
		t.Errorf("server's peak RSS %d MiB after the hostile bodies", rss>>20)
	} else {
		t.Logf("server's peak RSS: %d MiB", rss>>20)
	}
	if code, body := httpGet(t, s.URL+"/api/v1/profiles"); code != 200 || !strings.Contains(body, "discovery") {
		t.Errorf("after the hostile bodies: %d %.200s", code, body)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
