package tftp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Errors that a Transfer's Err wraps; test them with errors.Is.
var (
	// ErrAccessViolation: the requested name is not servable (a .. segment,
	// an escape from the root through a symbolic link, a directory or another
	// non-regular file, an unreadable file).
	ErrAccessViolation = errors.New("access violation")
	// ErrNotFound: no such file under the root.
	ErrNotFound = errors.New("file not found")
	// ErrReadOnly: the request was a write request (WRQ); the server only
	// serves reads.
	ErrReadOnly = errors.New("server is read-only")
	// ErrClientAborted: the client ended the transfer with a TFTP ERROR
	// packet. The error is a *ClientError that tells the code.
	ErrClientAborted = errors.New("transfer aborted by client")
	// ErrTimeout: the client stopped answering (no ACK within Timeout after
	// Retries retransmissions), or the transfer ran longer than
	// Config.TransferTimeout.
	ErrTimeout = errors.New("transfer timed out")
	// ErrBusy: Config.MaxTransfers transfers were already running.
	ErrBusy = errors.New("server busy")
	// ErrServerClosed: the server was shut down during the transfer.
	ErrServerClosed = errors.New("tftp server closed")
)

// ClientError is the error of a transfer that the client ended with a TFTP
// ERROR packet. It matches ErrClientAborted with errors.Is.
type ClientError struct {
	Code    int    // TFTP error code (RFC 1350, RFC 2347: 8 = option negotiation)
	Message string // the client's message
}

func (e *ClientError) Error() string {
	return fmt.Sprintf("transfer aborted by client: TFTP error %d %q", e.Code, e.Message)
}

// Is reports whether target is ErrClientAborted.
func (e *ClientError) Is(target error) bool { return target == ErrClientAborted }

// TFTP error codes (RFC 1350, RFC 2347).
const (
	CodeNotDefined        = 0
	CodeFileNotFound      = 1
	CodeAccessViolation   = 2
	CodeDiskFull          = 3
	CodeIllegalOperation  = 4
	CodeUnknownTID        = 5
	CodeFileExists        = 6
	CodeNoSuchUser        = 7
	CodeOptionNegotiation = 8
)

// Transfer describes one finished request: every read request, successful or
// not, and every refused write request (Write is true, Err wraps ErrReadOnly).
type Transfer struct {
	// RemoteAddr is the client's address and port (its transfer ID).
	RemoteAddr netip.AddrPort
	// LocalAddr is the server address the request was sent to, when the
	// operating system told it (invalid otherwise).
	LocalAddr netip.Addr
	// Filename is the name as the client sent it.
	Filename string
	// Path is the file on disk the name resolved to (the root joined with the
	// cleaned name), or "" when the name was refused before resolution.
	Path string
	// Write is true for a (refused) write request.
	Write bool
	// Mode is the transfer mode the client asked for ("octet", "netascii");
	// "" when the request was refused before the transfer started.
	Mode string
	// Size is the file's size, or -1 when no file was opened.
	Size int64
	// BytesSent counts the file bytes handed to the network. Equal to Size on
	// success.
	BytesSent int64
	// BlockSize is the negotiated block size (RFC 2348): 512 unless the
	// client asked for another and the server accepted it; 0 when the
	// request was refused before the transfer started.
	BlockSize int
	// TSize is true when the server answered the tsize option (RFC 2349).
	TSize bool
	// Start is when the request arrived; Duration how long it took to finish.
	Start    time.Time
	Duration time.Duration
	// Duplicate is true for a read request that repeated one of the same
	// client address, port and file name while that one's transfer was
	// running, and that transfer sent the file: the repeat was ignored
	// (nothing sent; Err nil, BytesSent 0).
	Duplicate bool
	// Retransmits counts the datagrams the server sent that were not
	// acknowledged (pin's DatagramsSent minus DatagramsAcked): a packet sent
	// again after Config.Timeout, or the last one of a failed transfer. On a
	// loaded network each one is traffic the storm did not need.
	Retransmits int
	// Err is nil when the whole file was sent and acknowledged. Otherwise it
	// wraps one of ErrAccessViolation, ErrNotFound, ErrReadOnly,
	// ErrClientAborted (a *ClientError), ErrTimeout, ErrBusy or
	// ErrServerClosed, or holds an I/O error.
	Err error
}

// SizeProbe reports whether the transfer was a size probe: the client asked
// for options, got the OACK and then ended the transfer with error 8 (option
// negotiation) before any data, as EDK2 (UEFI) firmware does to learn the
// file size before its real read request. A probe is not a failure.
func (t Transfer) SizeProbe() bool {
	var ce *ClientError
	return errors.As(t.Err, &ce) && ce.Code == CodeOptionNegotiation && t.BytesSent == 0
}
