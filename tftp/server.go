// Package tftp is matchbox's read-only TFTP server (RFC 1350, with the
// blksize and tsize options of RFC 2347, 2348 and 2349), built on
// github.com/pin/tftp/v3. It serves the iPXE binaries that PXE firmware
// fetches before it continues over HTTP.
//
// Files are served from Config.Root only: names are cleaned by CleanName and
// opened through an os.Root, so neither `..`, absolute names nor symbolic
// links that point outside the root can reach another file. Write requests
// are refused. Every request, served or refused, is reported to
// Config.OnTransfer once it has finished.
//
// Error codes: pin/tftp sends every error as TFTP code 1 ("file not found")
// with the server's message, so a refused name reaches the client as code 1
// with the text "Access violation" (RFC 1350: code 2), and a write request
// as code 1 with "Access violation: server is read-only". A handler cannot
// choose the code in pin/tftp v3.1.0: an error a read or write handler
// returns goes to sender.abort or receiver.abort, which send
// packERROR(buf, 1, err.Error()) whatever the error's type (sender.go:284,
// receiver.go:264); the handler holds only an io.ReaderFrom or io.WriterTo
// whose socket is unexported, so it cannot send its own ERROR packet from
// the transfer's port either. Codes 2 (access violation) and 4 (illegal
// operation) need a patched pin/tftp (a replace directive) or an upstream
// change, such as abort taking the code from an error that has one.
// Clients (curl, tftp-hpa, iPXE, EDK2) show the text and stop either way;
// TestServeHostileTFTP (cmd/matchbox) holds today's codes.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pintftp "github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Defaults for the zero fields of Config.
const (
	DefaultAddr            = ":69"
	DefaultTimeout         = time.Second
	DefaultRetries         = 5
	DefaultTransferTimeout = 10 * time.Minute
	DefaultMaxTransfers    = 16384
	DefaultShutdownGrace   = 5 * time.Second
)

// Config configures a Server. Only Root is required.
type Config struct {
	// Root is the directory whose files are served (required, must exist).
	Root string
	// Addr is the UDP address to listen on (default ":69", every address,
	// IPv4 and IPv6). Tests use "127.0.0.1:0" and read Server.Addr.
	Addr string
	// Logger receives one line per finished transfer (Info when served,
	// Debug for an EDK2 size probe, Warn otherwise). Default slog.Default().
	Logger *slog.Logger
	// OnTransfer, when set, is called once for every finished request (see
	// Transfer), from the transfer's goroutine, after the client got its
	// last packet. It may be called concurrently. The context carries the
	// values of Serve's context but is not cancelled with it, so an event can
	// still be recorded during shutdown. A panic in OnTransfer is logged and
	// recovered.
	OnTransfer func(context.Context, Transfer)
	// Timeout is how long the server waits for the client's answer to one
	// packet before it sends the packet again (default 1s).
	Timeout time.Duration
	// Retries is how many times one packet is sent again before the
	// transfer is abandoned (default 5).
	Retries int
	// TransferTimeout bounds one whole transfer (default 10m); a client that
	// acknowledges too slowly is cut off with ErrTimeout.
	TransferTimeout time.Duration
	// MaxBlockSize caps the negotiated blksize (513..65464). Zero caps it
	// only by the MTU of the interface the request came in on, minus the IP
	// and UDP headers, so blocks are never fragmented.
	MaxBlockSize int
	// MaxTransfers bounds the number of transfers running at once (default
	// 16384); a request past it is refused with ErrBusy. A transfer costs a
	// goroutine, a socket, an open file and a few KiB; a rack powering on
	// retries requests whose transfers are still timing out on the server,
	// so a storm of N machines can hold more than N transfers for a while
	// (1024 refused some of a storm of 1,000).
	MaxTransfers int
	// ShutdownGrace is how long Serve lets running transfers finish after
	// its context is cancelled before it aborts them (default 5s).
	ShutdownGrace time.Duration
}

// Server is a read-only TFTP server. Create it with New, then Serve (which
// listens if Listen was not called).
type Server struct {
	cfg      Config
	log      *slog.Logger
	root     *os.Root
	rootPath string
	pin      *pintftp.Server

	mu       sync.Mutex
	conn     *net.UDPConn
	serving  bool
	closed   bool
	eventCtx context.Context
	stopped  chan struct{} // closed when pin's Shutdown has returned

	// abortCtx is cancelled to make running transfers stop at their next
	// block.
	abortCtx context.Context
	abort    context.CancelFunc

	active atomic.Int64
	slots  slotTable
	files  fileCache
}

// New checks cfg and opens the root. It does not listen yet.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("tftp: Config.Root is empty")
	}
	rootPath, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp: root %q: %w", cfg.Root, err)
	}
	fi, err := os.Stat(rootPath)
	if err != nil {
		return nil, fmt.Errorf("tftp: root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tftp: root %q is not a directory", rootPath)
	}
	root, err := os.OpenRoot(rootPath)
	if err != nil {
		return nil, fmt.Errorf("tftp: open root: %w", err)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.TransferTimeout <= 0 {
		cfg.TransferTimeout = DefaultTransferTimeout
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = DefaultMaxTransfers
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.MaxBlockSize != 0 && (cfg.MaxBlockSize <= 512 || cfg.MaxBlockSize > 65464) {
		root.Close()
		return nil, fmt.Errorf("tftp: MaxBlockSize %d out of range 513..65464", cfg.MaxBlockSize)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		root:     root,
		rootPath: rootPath,
		eventCtx: context.Background(),
		stopped:  make(chan struct{}),
		slots:    slotTable{m: map[string]*slot{}},
	}
	s.abortCtx, s.abort = context.WithCancel(context.Background())
	p := pintftp.NewServer(s.handleRead, s.handleWrite)
	p.SetTimeout(cfg.Timeout)
	p.SetRetries(cfg.Retries)
	// pin's default backoff sleeps up to 1s more before each retransmission;
	// the timeout already was the wait.
	p.SetBackoff(func(int) time.Duration { return 0 })
	if cfg.MaxBlockSize != 0 {
		p.SetBlockSize(cfg.MaxBlockSize)
	}
	p.SetHook(hook{s})
	s.pin = p
	return s, nil
}

// Root returns the absolute path of the served directory.
func (s *Server) Root() string { return s.rootPath }

// Listen binds the UDP socket of Config.Addr. Serve calls it when it was not
// called before; calling it first lets a caller learn the bound address
// (Addr) before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.conn != nil {
		return nil
	}
	addr, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("tftp: listen address %q: %w", s.cfg.Addr, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen on %s: %w", s.cfg.Addr, err)
	}
	setReadBuffer(conn, readBufferBytes)
	// Ask for the destination address and interface of every datagram now,
	// not when pin's Serve starts: a request queued before then would carry
	// none, and pin then answers from the default address with blksize
	// capped at 512. pin sets the same options again.
	if a := conn.LocalAddr().(*net.UDPAddr); a.IP.To4() != nil {
		err = ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		err = ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil {
		s.log.Warn("tftp: no per-packet address information; blksize is capped at 512", "err", err)
	}
	s.conn = conn
	return nil
}

// readBufferBytes is the receive buffer of the listening socket. Every
// request of a storm arrives on this one socket, read by one goroutine
// (pin's loop): at the default buffer (about 200 KiB, some 270 requests
// counted at their kernel size) a rack powering on overflows it, and each
// request lost costs its client a retransmission timeout (seconds).
const readBufferBytes = 4 << 20

// setReadBuffer raises c's receive buffer, past net.core.rmem_max when the
// process may (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else up to it.
func setReadBuffer(c *net.UDPConn, n int) {
	if raw, err := c.SyscallConn(); err == nil {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		}); err == nil && serr == nil {
			return
		}
	}
	c.SetReadBuffer(n)
}

// Addr returns the bound address (a *net.UDPAddr), or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// Active returns the number of transfers running now.
func (s *Server) Active() int { return int(s.active.Load()) }

// Serve answers requests until ctx is cancelled or Shutdown or Close is
// called. On cancellation it stops listening, lets running transfers finish
// for Config.ShutdownGrace, aborts the rest and returns once every transfer
// goroutine has ended. It returns nil when stopped that way, an error when
// it could not listen or serve. Serve can be called once.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("tftp: Serve called twice")
	}
	s.serving = true
	s.eventCtx = context.WithoutCancel(ctx)
	conn := s.conn
	s.mu.Unlock()

	s.log.Debug("tftp serving", "addr", conn.LocalAddr().String(), "root", s.rootPath)
	errc := make(chan error, 1)
	go func() { errc <- s.pin.Serve(conn) }()
	select {
	case <-ctx.Done():
		gctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		defer cancel()
		_ = s.Shutdown(gctx)
		<-errc
		return nil
	case err := <-errc:
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil
		}
		s.Close()
		return fmt.Errorf("tftp: serve: %w", err)
	}
}

// Shutdown stops listening and waits for running transfers to finish. When
// ctx ends first, it aborts them (each stops at its next block, or after its
// retransmissions time out if its client went silent: at most Timeout ×
// (Retries+1)), waits for them and returns ctx's error. After Shutdown the
// server cannot serve again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
	if first {
		go func() {
			// pin's Shutdown closes its listener, stops its loop and waits
			// for every transfer goroutine.
			s.pin.Shutdown()
			s.root.Close()
			close(s.stopped)
		}()
	}
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		s.abort()
		<-s.stopped
		return ctx.Err()
	}
}

// Close aborts running transfers, stops the server and waits for every
// transfer goroutine to end.
func (s *Server) Close() error {
	s.abort()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Messages sent to the client; they never hold server paths.
var (
	msgNotFound        = errors.New("File not found")
	msgAccessViolation = errors.New("Access violation")
	msgReadOnly        = errors.New("Access violation: server is read-only")
	msgBusy            = errors.New("Server busy, try again")
)

// handleRead serves one read request. pin calls it in the transfer's own
// goroutine; when it returns an error before ReadFrom, pin sends that error's
// text to the client.
func (s *Server) handleRead(filename string, rf io.ReaderFrom) error {
	t := Transfer{Filename: filename, Size: -1, Start: time.Now()}
	if ot, ok := rf.(pintftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		t.RemoteAddr = udpAddrPort(&ra)
	}
	if rpi, ok := rf.(pintftp.RequestPacketInfo); ok {
		if a, ok := netip.AddrFromSlice(rpi.LocalIP()); ok {
			t.LocalAddr = a.Unmap()
		}
	}

	n := s.active.Add(1)
	defer s.active.Add(-1)
	if n > int64(s.cfg.MaxTransfers) {
		t.Err = fmt.Errorf("%w: %d transfers running", ErrBusy, n-1)
		s.finish(&t)
		return msgBusy
	}

	// A client that got no answer in time sends its read request again
	// from the same port: the transfer of the first is running (its OACK
	// or first block may be on its way). A second transfer from another
	// port would send the same file twice and may take the client's
	// acknowledgements from the first. The repeat waits for the running
	// transfer instead and sends nothing if it served the file; if it
	// failed (a size probe's end, a timeout), the repeat is a new request.
	key := slotKey(t.RemoteAddr, filename)
	var sl *slot
	for {
		var running bool
		sl, running = s.slots.acquire(key)
		if !running {
			break
		}
		<-sl.done
		if sl.ok {
			t.Duplicate = true
			s.finish(&t)
			// Nothing is sent: pin's socket for this request is closed
			// when the sender is collected (pin closes it only after
			// sending).
			return nil
		}
	}
	served := false
	defer func() {
		if !served {
			s.slots.release(key, sl, false)
		}
	}()

	f, size, path, err := s.resolve(filename)
	t.Path = path
	if err != nil {
		t.Err = err
		s.finish(&t)
		if errors.Is(err, ErrNotFound) {
			return msgNotFound
		}
		return msgAccessViolation
	}
	defer f.Close()
	t.Size = size
	if ot, ok := rf.(pintftp.OutgoingTransfer); ok {
		// A tsize option is answered with the file's size whatever value
		// the request carried (RFC 2349 asks for 0; pin would echo another).
		ot.SetSize(size)
	}

	r := newFileReader(f, size, s.abortCtx, t.Start.Add(s.cfg.TransferTimeout))
	if fi, err := f.Stat(); err == nil && fi.Size() == size {
		if data, err := s.files.contents(path, f, fi); err == nil && data != nil {
			r.data = data
		}
	}
	sent, err := rf.ReadFrom(r)
	r.release()
	opts := s.slots.release(key, sl, err == nil)
	served = true

	t.BytesSent = sent
	t.Mode = opts.mode
	if r := opts.sent - opts.acked; r > 0 {
		t.Retransmits = r
	}
	t.BlockSize = 512
	if v, ok := opts.opts["blksize"]; ok {
		if b, err := strconv.Atoi(v); err == nil {
			t.BlockSize = b
		}
	}
	if v, ok := opts.opts["tsize"]; ok && v != "0" {
		t.TSize = true
	}
	t.Err = classify(err)
	s.finish(&t)
	// pin already sent the error to the client; the returned error is only
	// used by pin to abort a transfer that has not been aborted yet.
	return err
}

// resolve maps a requested name to an open regular file under the root, its
// size and its path (the root joined with the cleaned name; "" when the name
// was refused before lookup). Errors wrap ErrAccessViolation or ErrNotFound.
func (s *Server) resolve(name string) (*os.File, int64, string, error) {
	rel, err := CleanName(name)
	if err != nil {
		return nil, -1, "", err
	}
	native := filepath.FromSlash(rel)
	path := filepath.Join(s.rootPath, native)
	f, size, err := s.open(native)
	return f, size, path, err
}

// open opens a cleaned, native relative name under the root when it is a
// regular file.
func (s *Server) open(native string) (*os.File, int64, error) {
	// Stat before Open, so a FIFO or device never gets opened (opening a
	// FIFO blocks).
	fi, err := s.root.Stat(native)
	if err != nil {
		return nil, -1, classifyOpen(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, -1, fmt.Errorf("%w: %s is not a regular file (%s)", ErrAccessViolation, native, fi.Mode().Type())
	}
	f, err := s.root.Open(native)
	if err != nil {
		return nil, -1, classifyOpen(err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, -1, fmt.Errorf("%w: stat %s: %w", ErrAccessViolation, native, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, -1, fmt.Errorf("%w: %s is not a regular file", ErrAccessViolation, native)
	}
	return f, fi.Size(), nil
}

func classifyOpen(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	// Escapes through symbolic links ("path escapes from parent"),
	// permissions, loops, names through a non-directory.
	return fmt.Errorf("%w: %w", ErrAccessViolation, err)
}

// handleWrite refuses every write request.
func (s *Server) handleWrite(filename string, wt io.WriterTo) error {
	t := Transfer{Filename: filename, Write: true, Size: -1, Start: time.Now()}
	if it, ok := wt.(pintftp.IncomingTransfer); ok {
		ra := it.RemoteAddr()
		t.RemoteAddr = udpAddrPort(&ra)
	}
	if rpi, ok := wt.(pintftp.RequestPacketInfo); ok {
		if a, ok := netip.AddrFromSlice(rpi.LocalIP()); ok {
			t.LocalAddr = a.Unmap()
		}
	}
	if rel, err := CleanName(filename); err == nil {
		t.Path = filepath.Join(s.rootPath, filepath.FromSlash(rel))
	}
	t.Err = fmt.Errorf("%w: write request for %q refused", ErrReadOnly, filename)
	s.finish(&t)
	return msgReadOnly
}

// pin reports a client's ERROR packet as "sending block N: code=C, error: M".
var clientErrRE = regexp.MustCompile(`code=(\d+), error: (.*)$`)

// classify turns the error of pin's ReadFrom into one that wraps this
// package's sentinels.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrServerClosed) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: no answer from client: %w", ErrTimeout, err)
	}
	if m := clientErrRE.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		msg := m[2]
		for len(msg) > 0 && msg[len(msg)-1] == 0 {
			msg = msg[:len(msg)-1]
		}
		return &ClientError{Code: code, Message: msg}
	}
	return err
}

// finish completes t, logs it and hands it to OnTransfer.
func (s *Server) finish(t *Transfer) {
	t.Duration = time.Since(t.Start)
	s.logTransfer(t)
	if s.cfg.OnTransfer == nil {
		return
	}
	s.mu.Lock()
	ctx := s.eventCtx
	s.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("tftp OnTransfer panicked", "panic", p, "file", t.Filename)
		}
	}()
	s.cfg.OnTransfer(ctx, *t)
}

func (s *Server) logTransfer(t *Transfer) {
	attrs := []any{
		"remote", t.RemoteAddr.String(),
		"file", t.Filename,
		"bytes", t.BytesSent,
		"blksize", t.BlockSize,
		"duration", t.Duration.Round(time.Microsecond).String(),
		"retransmits", t.Retransmits,
	}
	switch {
	case t.Duplicate:
		s.log.Debug("tftp repeated read request ignored: its transfer sent the file", attrs...)
	case t.Err == nil:
		s.log.Info("tftp sent file", attrs...)
	case t.SizeProbe():
		s.log.Debug("tftp size probe", append(attrs, "size", t.Size)...)
	case t.Write:
		s.log.Warn("tftp write refused", attrs...)
	default:
		s.log.Warn("tftp transfer failed", append(attrs, "err", t.Err.Error())...)
	}
}

func udpAddrPort(a *net.UDPAddr) netip.AddrPort {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

// hook receives pin's per-transfer statistics, which hold the negotiated
// options; they are matched to the running handleRead by client address and
// file name.
type hook struct{ s *Server }

func (h hook) OnSuccess(st pintftp.TransferStats) { h.s.slots.fill(st) }

func (h hook) OnFailure(st pintftp.TransferStats, err error) {
	if st.RemoteAddr == nil {
		// pin's accept loop: a malformed or unexpected packet on the
		// listening port.
		h.s.log.Debug("tftp bad request packet", "err", err)
		return
	}
	h.s.slots.fill(st)
}

// negotiated is what the hook learnt about one transfer.
type negotiated struct {
	mode string
	opts map[string]string
	// sent and acked are pin's counts of the transfer's datagrams (OACK,
	// DATA, each retransmission) and of the acknowledgements that matched.
	sent, acked int
}

// slot is one running read transfer of a client address, port and file
// name: what pin reported of its options, and how it ended.
type slot struct {
	neg  negotiated
	done chan struct{} // closed when the transfer has ended
	ok   bool          // the file was sent whole (set before done closes)
}

// slotTable holds the running transfers by client address, port and file
// name: one each, repeated requests wait for it.
type slotTable struct {
	mu sync.Mutex
	m  map[string]*slot
}

func slotKey(ap netip.AddrPort, filename string) string {
	return ap.String() + "\x00" + filename
}

// acquire returns key's running transfer (running true), or a new slot
// for the caller's transfer, which then runs under key until release.
func (t *slotTable) acquire(key string) (sl *slot, running bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.m[key]; sl != nil {
		return sl, true
	}
	sl = &slot{done: make(chan struct{})}
	t.m[key] = sl
	return sl, false
}

// release ends the transfer of sl (ok: the file was sent whole), wakes
// the repeated requests waiting for it and returns its options.
func (t *slotTable) release(key string, sl *slot, ok bool) negotiated {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[key] == sl {
		delete(t.m, key)
	}
	sl.ok = ok
	close(sl.done)
	return sl.neg
}

// fill records the options of a transfer that pin reports.
func (t *slotTable) fill(st pintftp.TransferStats) {
	ip, ok := netip.AddrFromSlice(st.RemoteAddr)
	if !ok {
		return
	}
	key := slotKey(netip.AddrPortFrom(ip.Unmap(), uint16(st.Tid)), st.Filename)
	opts := make(map[string]string, len(st.Opts))
	for k, v := range st.Opts {
		opts[k] = v
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.m[key]; sl != nil {
		sl.neg = negotiated{mode: st.Mode, opts: opts, sent: st.DatagramsSent, acked: st.DatagramsAcked}
	}
}
