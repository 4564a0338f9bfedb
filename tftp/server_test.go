package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"
)

// debianUndionly is the iPXE binary of Debian's ipxe package; tests use it
// when present and a random 1 MiB file otherwise.
const debianUndionly = "/usr/lib/ipxe/undionly.kpxe"

// bootFile returns the content tests serve as undionly.kpxe.
func bootFile(t testing.TB) []byte {
	t.Helper()
	if b, err := os.ReadFile(debianUndionly); err == nil && len(b) > 0 {
		return b
	}
	b := make([]byte, 1<<20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testEnv is a server on 127.0.0.1:0 serving a temporary root, with every
// reported transfer collected.
type testEnv struct {
	srv     *Server
	addr    string
	root    string
	outside string // a directory beside the root, holding secret.txt
	boot    []byte

	mu        sync.Mutex
	transfers []Transfer
	notify    chan struct{}
}

func newEnv(t *testing.T, tweak func(*Config)) *testEnv {
	t.Helper()
	base := t.TempDir()
	e := &testEnv{
		root:    filepath.Join(base, "root"),
		outside: filepath.Join(base, "outside"),
		boot:    bootFile(t),
		notify:  make(chan struct{}, 1024),
	}
	must(t, os.MkdirAll(filepath.Join(e.root, "sub", "deeper"), 0o755))
	must(t, os.MkdirAll(e.outside, 0o755))
	must(t, os.WriteFile(filepath.Join(e.root, "undionly.kpxe"), e.boot, 0o644))
	must(t, os.WriteFile(filepath.Join(e.root, "sub", "deeper", "file.bin"), []byte("deep file\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(e.root, "empty"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(e.root, "exact512"), bytes.Repeat([]byte("x"), 1024), 0o644))
	must(t, os.WriteFile(filepath.Join(e.outside, "secret.txt"), []byte("secret\n"), 0o644))
	// Links inside the root: one that stays inside, three that escape.
	must(t, os.Symlink("undionly.kpxe", filepath.Join(e.root, "link.kpxe")))
	must(t, os.Symlink("../outside/secret.txt", filepath.Join(e.root, "escape-rel")))
	must(t, os.Symlink(filepath.Join(e.outside, "secret.txt"), filepath.Join(e.root, "escape-abs")))
	must(t, os.Symlink("/etc", filepath.Join(e.root, "etcdir")))
	must(t, os.Symlink("../outside", filepath.Join(e.root, "outdir")))

	cfg := Config{
		Root:    e.root,
		Addr:    "127.0.0.1:0",
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Timeout: 500 * time.Millisecond,
		Retries: 3,
		OnTransfer: func(_ context.Context, tr Transfer) {
			e.mu.Lock()
			e.transfers = append(e.transfers, tr)
			e.mu.Unlock()
			e.notify <- struct{}{}
		},
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	must(t, err)
	must(t, srv.Listen())
	e.srv = srv
	e.addr = srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitTransfers waits until n transfers have been reported and returns them.
func (e *testEnv) waitTransfers(t *testing.T, n int) []Transfer {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		if len(e.transfers) >= n {
			out := append([]Transfer(nil), e.transfers...)
			e.mu.Unlock()
			return out
		}
		e.mu.Unlock()
		select {
		case <-e.notify:
		case <-deadline:
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("got %d transfers, want %d: %+v", len(e.transfers), n, e.transfers)
		}
	}
}

// get downloads name with pin's client. blksize 0 sends no blksize option.
func (e *testEnv) get(name string, blksize int, tsize bool) ([]byte, int64, bool, error) {
	c, err := pintftp.NewClient(e.addr)
	if err != nil {
		return nil, 0, false, err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	c.SetBackoff(func(int) time.Duration { return 10 * time.Millisecond })
	if blksize != 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(tsize)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, false, err
	}
	size, hasSize := wt.(pintftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, size, hasSize, err
	}
	return buf.Bytes(), size, hasSize, nil
}

func TestDownloadBlockSizes(t *testing.T) {
	e := newEnv(t, nil)
	for i, bs := range []int{0, 512, 1468, 8192, 65464} {
		got, size, hasSize, err := e.get("undionly.kpxe", bs, true)
		if err != nil {
			t.Fatalf("blksize %d: %v", bs, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(e.boot) {
			t.Fatalf("blksize %d: got %d bytes, differ from the %d served", bs, len(got), len(e.boot))
		}
		if !hasSize || size != int64(len(e.boot)) {
			t.Fatalf("blksize %d: tsize = %d (answered %v), want %d", bs, size, hasSize, len(e.boot))
		}
		trs := e.waitTransfers(t, i+1)
		tr := trs[i]
		want := bs
		if bs == 0 {
			want = 512
		}
		if tr.Err != nil || tr.BlockSize != want || tr.BytesSent != int64(len(e.boot)) ||
			tr.Size != int64(len(e.boot)) || !tr.TSize || tr.Mode != "octet" {
			t.Fatalf("blksize %d: transfer %+v", bs, tr)
		}
	}
}

func TestTransferFields(t *testing.T) {
	e := newEnv(t, nil)
	start := time.Now()
	got, _, _, err := e.get("/sub/deeper/file.bin", 1468, false)
	must(t, err)
	if string(got) != "deep file\n" {
		t.Fatalf("got %q", got)
	}
	tr := e.waitTransfers(t, 1)[0]
	if tr.Err != nil {
		t.Fatalf("Err = %v", tr.Err)
	}
	if tr.Filename != "/sub/deeper/file.bin" {
		t.Errorf("Filename = %q", tr.Filename)
	}
	if want := filepath.Join(e.srv.Root(), "sub", "deeper", "file.bin"); tr.Path != want {
		t.Errorf("Path = %q, want %q", tr.Path, want)
	}
	if tr.RemoteAddr.Addr().String() != "127.0.0.1" || tr.RemoteAddr.Port() == 0 {
		t.Errorf("RemoteAddr = %v", tr.RemoteAddr)
	}
	if tr.LocalAddr.String() != "127.0.0.1" {
		t.Errorf("LocalAddr = %v", tr.LocalAddr)
	}
	if tr.BytesSent != 10 || tr.Size != 10 || tr.BlockSize != 1468 || tr.TSize || tr.Write {
		t.Errorf("transfer = %+v", tr)
	}
	if tr.Start.Before(start) || tr.Duration <= 0 || tr.Duration > 5*time.Second {
		t.Errorf("Start %v Duration %v", tr.Start, tr.Duration)
	}
}

func TestNamesServed(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		want []byte
	}{
		{"undionly.kpxe", e.boot},
		{"/undionly.kpxe", e.boot},                     // leading slash: relative to the root
		{"//undionly.kpxe", e.boot},                    //
		{"./undionly.kpxe", e.boot},                    //
		{"link.kpxe", e.boot},                          // symlink inside the root
		{`sub\deeper\file.bin`, []byte("deep file\n")}, // Windows separators
		{`\sub\deeper\file.bin`, []byte("deep file\n")},
		{"sub//deeper/./file.bin", []byte("deep file\n")},
		{"empty", []byte{}},
		{"exact512", bytes.Repeat([]byte("x"), 1024)}, // multiple of the block size
	}
	for _, c := range cases {
		got, _, _, err := e.get(c.name, 0, true)
		if err != nil {
			t.Errorf("%q: %v", c.name, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%q: got %d bytes, want %d", c.name, len(got), len(c.want))
		}
	}
}

func TestNamesRefused(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name    string
		wantErr error
		msg     string // in the client's error
	}{
		{"missing.kpxe", ErrNotFound, "File not found"},
		{"../outside/secret.txt", ErrAccessViolation, "Access violation"},
		{"../../../../etc/passwd", ErrAccessViolation, "Access violation"},
		{`..\outside\secret.txt`, ErrAccessViolation, "Access violation"},
		{"sub/../undionly.kpxe", ErrAccessViolation, "Access violation"},
		{"/etc/passwd", ErrNotFound, "File not found"}, // <root>/etc/passwd
		{"escape-rel", ErrAccessViolation, "Access violation"},
		{"escape-abs", ErrAccessViolation, "Access violation"},
		{"etcdir/passwd", ErrAccessViolation, "Access violation"},
		{"outdir/secret.txt", ErrAccessViolation, "Access violation"},
		{"sub", ErrAccessViolation, "Access violation"}, // a directory
		{"/", ErrAccessViolation, "Access violation"},
		{".", ErrAccessViolation, "Access violation"},
		{"undionly.kpxe/x", ErrAccessViolation, "Access violation"}, // not a directory
	}
	for i, c := range cases {
		got, _, _, err := e.get(c.name, 1468, true)
		if err == nil {
			t.Errorf("%q: served %d bytes (%q), want refusal", c.name, len(got), firstBytes(got))
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: client error %q, want %q", c.name, err, c.msg)
		}
		if strings.Contains(err.Error(), e.root) {
			t.Errorf("%q: client error %q reveals the root", c.name, err)
		}
		tr := e.waitTransfers(t, i+1)[i]
		if tr.Filename != c.name || !errors.Is(tr.Err, c.wantErr) || tr.BytesSent != 0 {
			t.Errorf("%q: transfer %+v, want error %v", c.name, tr, c.wantErr)
		}
	}
}

func firstBytes(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func TestWriteRefused(t *testing.T) {
	e := newEnv(t, nil)
	c, err := pintftp.NewClient(e.addr)
	must(t, err)
	c.SetTimeout(time.Second)
	c.SetRetries(2)
	rf, err := c.Send("uploaded.bin", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("data"))
	}
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write: err = %v, want a read-only refusal", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "uploaded.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uploaded.bin exists: %v", err)
	}
	tr := e.waitTransfers(t, 1)[0]
	if !tr.Write || !errors.Is(tr.Err, ErrReadOnly) || tr.Filename != "uploaded.bin" {
		t.Fatalf("transfer %+v", tr)
	}
}

// rawClient speaks TFTP by hand, for what pin's client cannot do.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
	tid  *net.UDPAddr // the server's transfer port, once known
}

func newRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	srv, err := net.ResolveUDPAddr("udp", addr)
	must(t, err)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, srv: srv}
}

func (c *rawClient) rrq(name string, opts ...string) {
	c.t.Helper()
	p := []byte{0, 1}
	p = append(p, name...)
	p = append(p, 0)
	p = append(p, "octet"...)
	p = append(p, 0)
	for _, o := range opts {
		p = append(p, o...)
		p = append(p, 0)
	}
	_, err := c.conn.WriteToUDP(p, c.srv)
	must(c.t, err)
}

// recv returns the next packet from the server's transfer port.
func (c *rawClient) recv(timeout time.Duration) (op uint16, body []byte, err error) {
	buf := make([]byte, 65536)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return 0, nil, err
	}
	if c.tid == nil {
		c.tid = from
	}
	if n < 2 {
		return 0, nil, fmt.Errorf("short packet")
	}
	return binary.BigEndian.Uint16(buf), buf[2:n], nil
}

func (c *rawClient) send(p []byte) {
	c.t.Helper()
	_, err := c.conn.WriteToUDP(p, c.tid)
	must(c.t, err)
}

func (c *rawClient) ack(block uint16) { c.send([]byte{0, 4, byte(block >> 8), byte(block)}) }

func (c *rawClient) errorPacket(code uint16, msg string) {
	p := []byte{0, 5, byte(code >> 8), byte(code)}
	p = append(p, msg...)
	c.send(append(p, 0))
}

func parseOACK(body []byte) map[string]string {
	m := map[string]string{}
	parts := bytes.Split(bytes.TrimSuffix(body, []byte{0}), []byte{0})
	for i := 0; i+1 < len(parts); i += 2 {
		m[string(parts[i])] = string(parts[i+1])
	}
	return m
}

// TestEDK2SizeProbe replays EDK2's boot: a read request with tsize and
// blksize, an abort with error 8 after the OACK, then the real read.
func TestEDK2SizeProbe(t *testing.T) {
	e := newEnv(t, nil)

	c := newRaw(t, e.addr)
	// Recent EDK2 also asks for windowsize (RFC 7440), which the server
	// does not offer: the OACK leaves it out and the client falls back to
	// lock-step.
	c.rrq("undionly.kpxe", "tsize", "0", "blksize", "1468", "windowsize", "4")
	op, body, err := c.recv(2 * time.Second)
	must(t, err)
	if op != 6 {
		t.Fatalf("first answer opcode %d, want OACK (6)", op)
	}
	opts := parseOACK(body)
	if len(opts) != 2 || opts["tsize"] != strconv.Itoa(len(e.boot)) || opts["blksize"] != "1468" {
		t.Fatalf("OACK options %v", opts)
	}
	c.errorPacket(8, "User aborted the transfer")

	probe := e.waitTransfers(t, 1)[0]
	var ce *ClientError
	if !errors.As(probe.Err, &ce) || ce.Code != 8 || !errors.Is(probe.Err, ErrClientAborted) {
		t.Fatalf("probe error %v, want a ClientError code 8", probe.Err)
	}
	if ce.Message != "User aborted the transfer" {
		t.Errorf("client message %q", ce.Message)
	}
	if !probe.SizeProbe() || probe.BytesSent != 0 || probe.BlockSize != 1468 || !probe.TSize {
		t.Fatalf("probe transfer %+v", probe)
	}

	// The second read, from a new port as EDK2 does, with blksize only.
	c2 := newRaw(t, e.addr)
	c2.rrq("undionly.kpxe", "blksize", "1468")
	var got []byte
	var block uint16
	for {
		op, body, err := c2.recv(2 * time.Second)
		must(t, err)
		switch op {
		case 6:
			c2.ack(0)
			continue
		case 3:
		default:
			t.Fatalf("opcode %d during the read: %q", op, body)
		}
		b := binary.BigEndian.Uint16(body)
		if b == block+1 {
			got = append(got, body[2:]...)
			block = b
		}
		c2.ack(b)
		if len(body)-2 < 1468 {
			break
		}
	}
	if !bytes.Equal(got, e.boot) {
		t.Fatalf("second read: %d bytes, differ", len(got))
	}
	second := e.waitTransfers(t, 2)[1]
	if second.Err != nil || second.SizeProbe() || second.BytesSent != int64(len(e.boot)) {
		t.Fatalf("second transfer %+v", second)
	}
	// No transfer goroutine is left behind.
	waitFor(t, func() bool { return e.srv.Active() == 0 && transferGoroutines() == 0 })
}

// transferGoroutines counts the goroutines pin runs per transfer.
func transferGoroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "tftp/v3.(*Server).handlePacket.func")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("condition not met in time; goroutines:\n%s", buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSilentClientTimesOut: a client that never acknowledges is dropped
// after Timeout × retries and reported with ErrTimeout.
func TestSilentClientTimesOut(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.Retries = 2 })
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe")
	start := time.Now()
	tr := e.waitTransfers(t, 1)[0]
	if !errors.Is(tr.Err, ErrTimeout) {
		t.Fatalf("Err = %v, want ErrTimeout", tr.Err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v to time out", d)
	}
	// The client saw the first block and its retransmissions.
	n := 0
	for {
		op, _, err := c.recv(200 * time.Millisecond)
		if err != nil {
			break
		}
		if op == 3 {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("got %d DATA packets, want the first block and its retransmissions", n)
	}
}

// TestTransferTimeout: a client that acknowledges too slowly is cut off.
func TestTransferTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TransferTimeout = 300 * time.Millisecond })
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe")
	for i := 0; i < 100; i++ {
		op, body, err := c.recv(2 * time.Second)
		if err != nil || op != 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
		c.ack(binary.BigEndian.Uint16(body))
	}
	tr := e.waitTransfers(t, 1)[0]
	if !errors.Is(tr.Err, ErrTimeout) || tr.BytesSent == 0 || tr.BytesSent >= int64(len(e.boot)) {
		t.Fatalf("transfer %+v, want ErrTimeout part-way", tr)
	}
}

// TestClientAbortMidTransfer: an ERROR from the client during the data phase.
func TestClientAbortMidTransfer(t *testing.T) {
	e := newEnv(t, nil)
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe")
	op, body, err := c.recv(2 * time.Second)
	must(t, err)
	if op != 3 || binary.BigEndian.Uint16(body) != 1 {
		t.Fatalf("op %d", op)
	}
	c.ack(1)
	_, _, err = c.recv(2 * time.Second)
	must(t, err)
	c.errorPacket(0, "disk full")
	tr := e.waitTransfers(t, 1)[0]
	var ce *ClientError
	if !errors.As(tr.Err, &ce) || ce.Code != 0 || tr.SizeProbe() || tr.BytesSent == 0 {
		t.Fatalf("transfer %+v", tr)
	}
}

func TestBusy(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxTransfers = 1; c.Timeout = 300 * time.Millisecond; c.Retries = 3 })
	hold := newRaw(t, e.addr)
	hold.rrq("undionly.kpxe") // never acknowledged: runs about a second
	_, _, err := hold.recv(2 * time.Second)
	must(t, err)
	_, _, _, err = e.get("undionly.kpxe", 0, false)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("second transfer: %v, want busy", err)
	}
	tr := e.waitTransfers(t, 1)[0]
	if !errors.Is(tr.Err, ErrBusy) {
		t.Fatalf("transfer %+v", tr)
	}
}

// TestDefaultMaxTransfersHoldsAStorm: with the default bound and receive
// buffer, 1,100 read requests sent at once (more than a rack's worth of
// machines, each then leaving its transfer waiting for the first ACK, as
// behind a retried request) all get their first block: none is lost in
// the listening socket's buffer, none refused as busy.
func TestDefaultMaxTransfersHoldsAStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,100 sockets")
	}
	e := newEnv(t, func(c *Config) { c.Timeout = 10 * time.Second; c.Retries = 1 })
	const n = 1100
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = newRaw(t, e.addr)
		clients[i].rrq("undionly.kpxe")
	}
	for i, c := range clients {
		op, body, err := c.recv(15 * time.Second)
		if err != nil {
			t.Fatalf("client %d: %v (its request was lost)", i, err)
		}
		if op != 3 {
			t.Fatalf("client %d: opcode %d (%q), want DATA", i, op, body)
		}
	}
	for _, c := range clients {
		c.errorPacket(0, "done")
	}
	for _, tr := range e.waitTransfers(t, n) {
		if errors.Is(tr.Err, ErrBusy) {
			t.Fatalf("transfer refused: %+v", tr)
		}
	}
}

func TestConcurrentDownloads(t *testing.T) {
	e := newEnv(t, nil)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			bs := []int{0, 1468, 8192}[i%3]
			got, _, _, err := e.get("undionly.kpxe", bs, true)
			if err == nil && !bytes.Equal(got, e.boot) {
				err = fmt.Errorf("download %d: content differs", i)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, tr := range e.waitTransfers(t, n) {
		if tr.Err != nil {
			t.Errorf("transfer %+v", tr)
		}
	}
}

func TestOnTransferPanicRecovered(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.OnTransfer = func(context.Context, Transfer) { panic("boom") }
	})
	for i := 0; i < 2; i++ {
		if _, _, _, err := e.get("undionly.kpxe", 1468, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServeStopsOnCancel: Serve returns once its context is cancelled, the
// port is released and no goroutine is left.
func TestServeStopsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644))
	srv, err := New(Config{Root: root, Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	must(t, srv.Listen())
	addr := srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	c, _ := pintftp.NewClient(addr)
	wt, err := c.Receive("f", "octet")
	must(t, err)
	_, err = wt.WriteTo(io.Discard)
	must(t, err)

	cancel()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	// The port is free again.
	ua, _ := net.ResolveUDPAddr("udp", addr)
	l, err := net.ListenUDP("udp", ua)
	must(t, err)
	l.Close()
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after stop: %v", err)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// TestCloseAbortsTransfers: Close stops a transfer in progress and returns.
func TestCloseAbortsTransfers(t *testing.T) {
	e := newEnv(t, nil)
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe")
	op, body, err := c.recv(2 * time.Second)
	must(t, err)
	if op != 3 {
		t.Fatalf("op %d", op)
	}
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	// Acknowledge only once Close has asked transfers to stop, so the next
	// block is where the transfer ends.
	waitFor(t, func() bool { return e.srv.abortCtx.Err() != nil })
	c.ack(binary.BigEndian.Uint16(body))
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	tr := e.waitTransfers(t, 1)[0]
	if !errors.Is(tr.Err, ErrServerClosed) {
		t.Fatalf("transfer %+v, want ErrServerClosed", tr)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty root accepted")
	}
	if _, err := New(Config{Root: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing root accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(f, nil, 0o644))
	if _, err := New(Config{Root: f}); err == nil {
		t.Error("file as root accepted")
	}
	if _, err := New(Config{Root: t.TempDir(), MaxBlockSize: 100}); err == nil {
		t.Error("MaxBlockSize 100 accepted")
	}
}

func TestMaxBlockSize(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBlockSize = 1024 })
	got, _, _, err := e.get("undionly.kpxe", 8192, true)
	must(t, err)
	if !bytes.Equal(got, e.boot) {
		t.Fatal("content differs")
	}
	if tr := e.waitTransfers(t, 1)[0]; tr.BlockSize != 1024 {
		t.Fatalf("BlockSize %d, want 1024", tr.BlockSize)
	}
}

// TestCloseWithoutServe: a server that listened but never served releases
// its port on Close.
func TestCloseWithoutServe(t *testing.T) {
	srv, err := New(Config{Root: t.TempDir(), Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	must(t, srv.Listen())
	addr := srv.Addr().(*net.UDPAddr)
	must(t, srv.Close())
	l, err := net.ListenUDP("udp", addr)
	must(t, err)
	l.Close()
	if err := srv.Listen(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
}

// readFromOnePort reads name over c's socket, acknowledging each packet
// to the port the first one came from, and counts the packets that came
// from any other port, until the last block and then quiet for quiet.
// Packets from port skip (an ended transfer's) are dropped.
func readFromOnePort(t *testing.T, c *rawClient, blksize int, quiet time.Duration, skip int) (got []byte, tid int, strays int) {
	t.Helper()
	buf := make([]byte, 65536)
	var block uint16
	done := false
	for {
		wait := 2 * time.Second
		if done {
			wait = quiet
		}
		c.conn.SetReadDeadline(time.Now().Add(wait))
		n, from, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			if done {
				return got, tid, strays
			}
			t.Fatalf("read: %v (after %d bytes)", err, len(got))
		}
		if from.Port == skip {
			continue
		}
		if tid == 0 {
			tid = from.Port
		}
		if from.Port != tid {
			strays++
			continue
		}
		op, body := binary.BigEndian.Uint16(buf), buf[2:n]
		switch op {
		case 6:
			c.conn.WriteToUDP([]byte{0, 4, 0, 0}, from)
		case 3:
			b := binary.BigEndian.Uint16(body)
			if b == block+1 {
				got = append(got, body[2:]...)
				block = b
			}
			c.conn.WriteToUDP([]byte{0, 4, byte(b >> 8), byte(b)}, from)
			if len(body)-2 < blksize {
				done = true
			}
		default:
			t.Fatalf("opcode %d: %q", op, body)
		}
	}
}

// TestRepeatedRequestIgnored: a client that sends its read request again
// from the same port (firmware does when its timer fires before the first
// answer) gets one transfer: nothing comes from a second port, the repeat
// is reported as a Duplicate that sent nothing.
func TestRepeatedRequestIgnored(t *testing.T) {
	e := newEnv(t, nil)
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe", "blksize", "1024")
	c.rrq("undionly.kpxe", "blksize", "1024")
	got, _, strays := readFromOnePort(t, c, 1024, 2*time.Second, 0)
	if !bytes.Equal(got, e.boot) {
		t.Fatalf("read %d bytes, want the %d of the file", len(got), len(e.boot))
	}
	if strays != 0 {
		t.Errorf("%d packets from a second transfer port", strays)
	}
	trs := e.waitTransfers(t, 2)
	var served, dups int
	for _, tr := range trs {
		switch {
		case tr.Duplicate && tr.Err == nil && tr.BytesSent == 0:
			dups++
		case !tr.Duplicate && tr.Err == nil && tr.BytesSent == int64(len(e.boot)):
			served++
		default:
			t.Errorf("transfer %+v", tr)
		}
	}
	if served != 1 || dups != 1 || len(trs) != 2 {
		t.Errorf("%d served, %d duplicates of %d reports; want 1 and 1 of 2", served, dups, len(trs))
	}
	waitFor(t, func() bool { return e.srv.Active() == 0 && transferGoroutines() == 0 })
}

// TestRepeatedRequestServedAfterFailure: a repeat that waited for a
// transfer the client then ended (error 8 after the OACK, as a size probe
// from the same port would) is served as a new request.
func TestRepeatedRequestServedAfterFailure(t *testing.T) {
	e := newEnv(t, nil)
	c := newRaw(t, e.addr)
	c.rrq("undionly.kpxe", "tsize", "0", "blksize", "1024")
	c.rrq("undionly.kpxe", "tsize", "0", "blksize", "1024")
	op, _, err := c.recv(2 * time.Second)
	must(t, err)
	if op != 6 {
		t.Fatalf("first answer opcode %d, want OACK", op)
	}
	first := c.tid.Port
	c.errorPacket(8, "probe done")
	c.tid = nil
	got, _, _ := readFromOnePort(t, c, 1024, 100*time.Millisecond, first)
	if !bytes.Equal(got, e.boot) {
		t.Fatalf("read %d bytes, want the %d of the file", len(got), len(e.boot))
	}
	trs := e.waitTransfers(t, 2)
	if !trs[0].SizeProbe() || trs[1].Duplicate || trs[1].Err != nil || trs[1].BytesSent != int64(len(e.boot)) {
		t.Fatalf("transfers %+v", trs)
	}
}

// TestRetransmitsCounted: a client that leaves some DATA blocks
// unacknowledged until the server sends them again gets the file, and the
// transfer reports one retransmission per block it let time out (none when
// it acknowledges every block at once).
func TestRetransmitsCounted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		withhold []uint16 // blocks left unacknowledged until sent again
	}{
		{"prompt", nil},
		{"one late ack", []uint16{3}},
		{"three late acks", []uint16{1, 10, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
			c := newRaw(t, e.addr)
			c.rrq("undionly.kpxe", "blksize", "1024")
			op, _, err := c.recv(2 * time.Second)
			must(t, err)
			if op != 6 {
				t.Fatalf("first answer opcode %d, want OACK", op)
			}
			c.ack(0)
			late := map[uint16]bool{}
			for _, b := range tc.withhold {
				late[b] = true
			}
			var got []byte
			var want uint16 = 1
			for {
				op, body, err := c.recv(2 * time.Second)
				must(t, err)
				if op != 3 || len(body) < 2 {
					t.Fatalf("opcode %d, want DATA", op)
				}
				block := binary.BigEndian.Uint16(body)
				if block != want {
					t.Fatalf("block %d, want %d", block, want)
				}
				if late[block] {
					delete(late, block) // the next copy is acknowledged
					continue
				}
				got = append(got, body[2:]...)
				c.ack(block)
				if len(body)-2 < 1024 {
					break
				}
				want++
			}
			if !bytes.Equal(got, e.boot) {
				t.Fatalf("read %d bytes, want the %d of the file", len(got), len(e.boot))
			}
			trs := e.waitTransfers(t, 1)
			if trs[0].Err != nil || trs[0].Retransmits != len(tc.withhold) {
				t.Fatalf("transfer err %v, %d retransmits; want nil and %d", trs[0].Err, trs[0].Retransmits, len(tc.withhold))
			}
		})
	}
}
