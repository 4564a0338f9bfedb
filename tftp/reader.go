package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// readBufSize is the size of the read-ahead buffer of one transfer: pin asks
// for one block (512..65464 bytes) per Read, so reading the file in 64 KiB
// chunks saves one system call per block.
const readBufSize = 64 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// fileReader reads a served file for pin's sender: buffered, bounded by the
// transfer deadline, and stopped when the server aborts transfers. It is an
// io.Seeker so that pin answers the tsize option itself in octet mode (in
// netascii mode pin wraps the reader, the size is unknown and tsize is not
// answered, which is right: the converted size differs).
type fileReader struct {
	f    *os.File
	data []byte // the whole file, shared with other transfers (fileCache), or nil
	size int64
	off  int64 // offset of the next byte Read returns
	buf  *[]byte
	r, w int // unread bytes are (*buf)[r:w], starting at file offset off
	// ctx ends when the server aborts transfers (Canceled) or at the
	// transfer's deadline (DeadlineExceeded): one timer per transfer, and
	// an atomic load per block instead of a clock read.
	ctx    context.Context
	cancel context.CancelFunc
}

func newFileReader(f *os.File, size int64, abort context.Context, deadline time.Time) *fileReader {
	ctx, cancel := context.WithDeadline(abort, deadline)
	return &fileReader{f: f, size: size, ctx: ctx, cancel: cancel}
}

func (fr *fileReader) Read(p []byte) (int, error) {
	if err := fr.ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w: transfer took longer than its limit", ErrTimeout)
		}
		return 0, ErrServerClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if fr.data != nil {
		if fr.off >= fr.size {
			return 0, io.EOF
		}
		n := copy(p, fr.data[fr.off:fr.size])
		fr.off += int64(n)
		return n, nil
	}
	if fr.r == fr.w {
		if fr.off >= fr.size {
			return 0, io.EOF
		}
		if fr.buf == nil {
			fr.buf = readBufPool.Get().(*[]byte)
		}
		b := *fr.buf
		if rest := fr.size - fr.off; rest < int64(len(b)) {
			b = b[:rest] // never past the size announced in tsize
		}
		n, err := fr.f.ReadAt(b, fr.off)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				// The file shrank while being served.
				return 0, io.EOF
			}
			return 0, fmt.Errorf("read %s: %w", fr.f.Name(), err)
		}
		fr.r, fr.w = 0, n
	}
	n := copy(p, (*fr.buf)[fr.r:fr.w])
	fr.r += n
	fr.off += int64(n)
	return n, nil
}

// Seek moves the read offset (pin uses it to learn the size for tsize).
func (fr *fileReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = fr.off + offset
	case io.SeekEnd:
		abs = fr.size + offset
	default:
		return 0, errors.New("tftp: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("tftp: negative offset")
	}
	if abs != fr.off {
		fr.off = abs
		fr.r, fr.w = 0, 0
	}
	return abs, nil
}

// release stops the reader's timer and returns the buffer to the pool; the
// reader must not be used after.
func (fr *fileReader) release() {
	fr.cancel()
	if fr.buf != nil {
		readBufPool.Put(fr.buf)
		fr.buf = nil
	}
}
