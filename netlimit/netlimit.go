// Package netlimit bounds the connections a TCP listener holds open, below
// the process's file limit, so that no number of slow or idle clients makes
// accept fail ("too many open files") and spin.
//
// A Listener admits at most Max connections. The last Reserve of them form a
// fast lane: a connection admitted there must finish every read within
// FastTimeout of its acceptance, so slow clients cannot hold the lane and a
// short request (a /healthz probe, an API call) still gets through while the
// ordinary slots are full of slowloris clients. With every slot taken, a new
// connection is accepted and closed at once (refused): it costs a file for a
// moment, never a failed accept spinning on "too many open files", and the
// kernel's accept queue keeps draining, so a probe arriving behind thousands
// of idle clients is not stuck behind them (a queue would be first in, first
// out) and finds a fast-lane slot within FastTimeout.
package netlimit

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config sets a Listener's bounds.
type Config struct {
	// Max is the number of connections held open at once (at least 2).
	Max int
	// Reserve is how many of Max form the fast lane (default Max/16, at
	// least 1, at most Max-1).
	Reserve int
	// FastTimeout bounds every read of a fast-lane connection, counted
	// from its acceptance (default 5 s).
	FastTimeout time.Duration
}

// Listener is a net.Listener that admits at most Config.Max connections.
type Listener struct {
	net.Listener
	cfg     Config
	slots   chan struct{} // one token per open connection
	open    atomic.Int64
	fast    atomic.Int64 // fast-lane admissions
	refused atomic.Int64 // connections closed for want of a slot
}

// New wraps ln. It fails on a Max below 2.
func New(ln net.Listener, cfg Config) (*Listener, error) {
	if cfg.Max < 2 {
		return nil, fmt.Errorf("connection limit %d: want at least 2", cfg.Max)
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = max(1, cfg.Max/16)
	}
	cfg.Reserve = min(cfg.Reserve, cfg.Max-1)
	if cfg.FastTimeout <= 0 {
		cfg.FastTimeout = 5 * time.Second
	}
	return &Listener{Listener: ln, cfg: cfg, slots: make(chan struct{}, cfg.Max)}, nil
}

// Accept returns the next connection a slot is free for, closing those
// that arrive while every slot is taken.
func (l *Listener) Accept() (net.Conn, error) {
	var c net.Conn
	for {
		var err error
		c, err = l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.refused.Add(1)
			c.Close()
			continue
		}
		break
	}
	n := l.open.Add(1)
	lc := &conn{Conn: c, l: l}
	if n > int64(l.cfg.Max-l.cfg.Reserve) {
		l.fast.Add(1)
		lc.deadline = time.Now().Add(l.cfg.FastTimeout)
		_ = c.SetReadDeadline(lc.deadline)
	}
	return lc, nil
}

// Open is the number of connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// FastAdmitted counts the connections admitted to the fast lane so far.
func (l *Listener) FastAdmitted() int64 { return l.fast.Load() }

// Refused counts the connections closed at once for want of a slot.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// Max is the number of connections held open at most.
func (l *Listener) Max() int { return l.cfg.Max }

// conn frees its slot once when closed; in the fast lane it keeps every read
// deadline within its own.
type conn struct {
	net.Conn
	l        *Listener
	deadline time.Time // zero outside the fast lane
	once     sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}

func (c *conn) SetReadDeadline(t time.Time) error {
	if !c.deadline.IsZero() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// DefaultMax derives a per-listener connection limit from the process's
// open-file limit: files minus headroom for the store, assets, DHCP and TFTP
// (256), shared by listeners, each connection counted twice (its socket and
// an asset file it may be serving). It is at least 64.
func DefaultMax(listeners int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 512
	}
	return DefaultMaxFor(rl.Cur, listeners)
}

// DefaultMaxFor is DefaultMax for a given file limit.
func DefaultMaxFor(files uint64, listeners int) int {
	listeners = max(1, listeners)
	if files > 1<<24 {
		files = 1 << 24
	}
	n := (int(files) - 256) / (2 * listeners)
	return max(64, n)
}
