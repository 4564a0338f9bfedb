package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeBMC is an in-memory BMC behind the session interface.
type fakeBMC struct {
	mu       sync.Mutex
	power    string
	failOpen int // the first failOpen opens fail with openErr
	openErr  error
	opens    int
	closes   int
	setErr   error // returned by every setPower
	sets     []string
	hangOpen bool
	// offAfterRead switches the machine off after that many power reads
	// (a machine shutting itself down), and cycleKeepsOff makes a cycle of
	// a machine that is off leave it off, as IPMI does.
	offAfterRead  int
	cycleKeepsOff bool
}

func (f *fakeBMC) open(ctx context.Context, ep Endpoint, driver string) (session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.hangOpen {
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return nil, fmt.Errorf("dial: %w", ctx.Err())
	}
	if f.opens <= f.failOpen {
		return nil, f.openErr
	}
	return &fakeSession{f: f, drv: driver}, nil
}

type fakeSession struct {
	f   *fakeBMC
	drv string
}

func (s *fakeSession) driver() string   { return s.drv }
func (s *fakeSession) provider() string { return "fake" }
func (s *fakeSession) powerState(context.Context) (string, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	st := s.f.power
	if s.f.offAfterRead > 0 {
		if s.f.offAfterRead--; s.f.offAfterRead == 0 {
			s.f.power = "off"
		}
	}
	return "Chassis Power is " + st + "\n", nil
}
func (s *fakeSession) setPower(_ context.Context, a string) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.sets = append(s.f.sets, a)
	if s.f.setErr != nil {
		return s.f.setErr
	}
	switch a {
	case "cycle", "reset":
		if !(s.f.cycleKeepsOff && s.f.power == "off") {
			s.f.power = "on"
		}
	case "on":
		s.f.power = "on"
	case "off", "soft":
		s.f.power = "off"
	}
	return nil
}
func (s *fakeSession) setBootDevice(context.Context, string, bool, bool) error { return nil }
func (s *fakeSession) bootOverride(context.Context) (bootOverride, bool, error) {
	return bootOverride{}, false, nil
}
func (s *fakeSession) close(context.Context) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.closes++
	return nil
}

var testEP = Endpoint{Address: "10.1.2.3", Driver: DriverIPMI, Username: "fake-user-x", Password: "fake-pass-Q1"}

func refused() error {
	return fmt.Errorf("provider: ipmitool: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		failOpen     int
		openErr      error
		retries      int
		wantAttempts int
		wantKind     error
	}{
		{"refused twice then ok", 2, refused(), 3, 3, nil},
		{"refused beyond retries", 10, refused(), 2, 3, ErrUnreachable},
		{"timeout is transient", 1, fmt.Errorf("provider: gofish: %w", context.DeadlineExceeded), 1, 2, nil},
		{"auth not retried", 10, errors.New("provider: gofish: 401: invalid username or password"), 3, 1, ErrAuth},
		{"unknown failure not retried", 10, errors.New("provider: gofish: 400: bad request"), 3, 1, ErrFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeBMC{power: "off", failOpen: tc.failOpen, openErr: tc.openErr}
			var logs bytes.Buffer
			ctl := New(Config{Retries: tc.retries, Backoff: time.Millisecond, Settle: -1, open: f.open,
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			res, err := ctl.SetPower(context.Background(), testEP, ActionOn)
			if res.Attempts != tc.wantAttempts || f.opens != tc.wantAttempts {
				t.Errorf("attempts = %d (opens %d), want %d", res.Attempts, f.opens, tc.wantAttempts)
			}
			if tc.wantKind == nil {
				if err != nil || f.power != "on" || res.PowerState != PowerOn {
					t.Errorf("err %v, power %s, result %+v", err, f.power, res)
				}
			} else if !errors.Is(err, tc.wantKind) {
				t.Errorf("err = %v, want %v", err, tc.wantKind)
			}
			if f.closes != f.opens-min(f.opens, tc.failOpen) {
				t.Errorf("%d sessions opened, %d closed", f.opens-min(f.opens, tc.failOpen), f.closes)
			}
			for _, s := range []string{fmt.Sprint(err), logs.String(), fmt.Sprintf("%+v", res)} {
				if strings.Contains(s, testEP.Password) || strings.Contains(s, testEP.Username) {
					t.Errorf("credentials leaked: %s", s)
				}
			}
		})
	}
}

func TestBackoffGrows(t *testing.T) {
	f := &fakeBMC{failOpen: 10, openErr: refused()}
	var times []time.Time
	var mu sync.Mutex
	open := func(ctx context.Context, ep Endpoint, d string) (session, error) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return f.open(ctx, ep, d)
	}
	ctl := New(Config{Retries: 3, Backoff: 20 * time.Millisecond, open: open})
	_, _ = ctl.PowerStatus(context.Background(), testEP)
	if len(times) != 4 {
		t.Fatalf("%d attempts, want 4", len(times))
	}
	// waits of at least 20, 40, 80 ms
	for i, min := range []time.Duration{20, 40, 80} {
		if gap := times[i+1].Sub(times[i]); gap < min*time.Millisecond {
			t.Errorf("wait before retry %d = %v, want >= %v", i+1, gap, min*time.Millisecond)
		}
	}
}

func TestNonIdempotentNotRetriedAfterSend(t *testing.T) {
	f := &fakeBMC{power: "on", setErr: refused()}
	ctl := New(Config{Retries: 3, Backoff: time.Millisecond, open: f.open})
	res, err := ctl.SetPower(context.Background(), testEP, ActionCycle)
	if !errors.Is(err, ErrUnreachable) || res.Attempts != 1 || len(f.sets) != 1 {
		t.Errorf("cycle: err %v, attempts %d, commands %q; want one attempt", err, res.Attempts, f.sets)
	}
	f = &fakeBMC{power: "off", setErr: refused()}
	ctl = New(Config{Retries: 3, Backoff: time.Millisecond, open: f.open})
	res, _ = ctl.SetPower(context.Background(), testEP, ActionOff)
	if res.Attempts != 4 {
		t.Errorf("off (idempotent): %d attempts, want 4", res.Attempts)
	}
}

func TestTimeoutHonoured(t *testing.T) {
	f := &fakeBMC{hangOpen: true}
	ctl := New(Config{Timeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond, open: f.open})
	_, err := ctl.PowerStatus(context.Background(), testEP)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) || f.opens != 2 {
		t.Errorf("err = %v after %d opens; want DeadlineExceeded after 2", err, f.opens)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &fakeBMC{hangOpen: true}
	ctl = New(Config{Retries: 5, Backoff: time.Hour, open: f.open})
	if _, err := ctl.PowerStatus(ctx, testEP); !errors.Is(err, context.Canceled) || f.opens != 1 {
		t.Errorf("cancelled ctx: err = %v after %d opens", err, f.opens)
	}
}

func TestRealConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	ctl := New(Config{Retries: 2, Backoff: time.Millisecond})
	ep := Endpoint{Address: "127.0.0.1", Port: port, Driver: DriverRedfish, Username: "u-refused", Password: "p-refused-9", Insecure: true}
	st, err := ctl.PowerStatus(context.Background(), ep)
	if st != PowerUnknown || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("PowerStatus = %s, %v; want unknown, ErrUnreachable", st, err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Attempts != 3 {
		t.Errorf("err %v: want 3 attempts", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	f := &fakeBMC{}
	ctl := New(Config{open: f.open})
	ctx := context.Background()
	checks := []struct {
		name string
		run  func() error
	}{
		{"no address", func() error { _, err := ctl.PowerStatus(ctx, Endpoint{}); return err }},
		{"bad driver", func() error { _, err := ctl.PowerStatus(ctx, Endpoint{Address: "x", Driver: "snmp"}); return err }},
		{"bad port", func() error { _, err := ctl.PowerStatus(ctx, Endpoint{Address: "x", Port: 70000}); return err }},
		{"bad action", func() error { _, err := ctl.SetPower(ctx, testEP, "explode"); return err }},
		{"bad device", func() error { _, err := ctl.SetBootDevice(ctx, testEP, BootOptions{Device: "floppy"}); return err }},
	}
	for _, c := range checks {
		if err := c.run(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
		}
	}
	if f.opens != 0 {
		t.Errorf("%d sessions opened for invalid arguments", f.opens)
	}
}

func TestParsePowerState(t *testing.T) {
	for raw, want := range map[string]PowerState{
		"Chassis Power is on\n": PowerOn, "Chassis Power is off\n": PowerOff, "On": PowerOn, "Off": PowerOff,
		"PoweringOn": PowerOff, "PoweringOff": PowerOn, "": PowerUnknown, "Error: no session": PowerUnknown,
	} {
		if got := ParsePowerState(raw); got != want {
			t.Errorf("ParsePowerState(%q) = %s, want %s", raw, got, want)
		}
	}
}

func TestEndpointNeverPrintsCredentials(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "endpoint", testEP)
	for _, s := range []string{testEP.String(), fmt.Sprintf("%v %+v %s", testEP, testEP, testEP), buf.String()} {
		if strings.Contains(s, testEP.Password) || strings.Contains(s, testEP.Username) {
			t.Errorf("credentials printed: %s", s)
		}
	}
}

func TestAutoDriverOrder(t *testing.T) {
	var tried []string
	f := &fakeBMC{power: "on"}
	open := func(ctx context.Context, ep Endpoint, d string) (session, error) {
		tried = append(tried, d)
		if d == DriverRedfish {
			return nil, refused()
		}
		return f.open(ctx, ep, d)
	}
	ep := testEP
	ep.Driver = DriverAuto
	res, err := New(Config{open: open}).SetPower(context.Background(), ep, ActionOn)
	if err != nil || res.Driver != DriverIPMI || strings.Join(tried, ",") != "redfish,ipmi" {
		t.Errorf("err %v driver %s tried %q", err, res.Driver, tried)
	}
}

func TestRunAllBoundedParallelism(t *testing.T) {
	for _, parallel := range []int{1, 3, 8} {
		var cur, peak atomic.Int32
		targets := make([]Target, 20)
		for i := range targets {
			targets[i] = Target{ID: fmt.Sprintf("m%02d", i), Endpoint: Endpoint{Address: fmt.Sprintf("10.0.0.%d", i)}}
		}
		out := RunAll(context.Background(), targets, parallel, func(ctx context.Context, tg Target) (Result, error) {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			cur.Add(-1)
			if strings.HasSuffix(tg.ID, "7") {
				return Result{Endpoint: tg.Endpoint.String()}, errors.New("boom " + tg.ID)
			}
			return Result{Endpoint: tg.Endpoint.String()}, nil
		})
		if p := peak.Load(); p > int32(parallel) || p < 1 {
			t.Errorf("parallel %d: peak concurrency %d", parallel, p)
		}
		if len(out) != len(targets) {
			t.Fatalf("%d outcomes for %d targets", len(out), len(targets))
		}
		for i, o := range out {
			wantErr := strings.HasSuffix(targets[i].ID, "7")
			if o.ID != targets[i].ID || (o.Err != nil) != wantErr || o.Result.Endpoint != targets[i].Endpoint.String() {
				t.Errorf("outcome %d = %+v", i, o)
			}
		}
	}
}

func TestRunAllCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	targets := []Target{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	out := RunAll(ctx, targets, 1, func(ctx context.Context, tg Target) (Result, error) {
		ran.Add(1)
		cancel()
		return Result{}, nil
	})
	if ran.Load() != 1 {
		t.Errorf("%d targets ran after cancel, want 1", ran.Load())
	}
	for _, o := range out[1:] {
		if !errors.Is(o.Err, context.Canceled) {
			t.Errorf("outcome %s err = %v, want context.Canceled", o.ID, o.Err)
		}
	}
}

// TestCycleOfMachineThatSwitchedItselfOff covers a machine that powers off
// between the status read and the cycle: it must end up on.
func TestCycleOfMachineThatSwitchedItselfOff(t *testing.T) {
	f := &fakeBMC{power: "on", offAfterRead: 1, cycleKeepsOff: true}
	ctl := New(Config{Settle: 300 * time.Millisecond, open: f.open})
	res, err := ctl.ProvisionBoot(context.Background(), testEP)
	if err != nil {
		t.Fatalf("provision: %v (steps %v)", err, res.Steps)
	}
	if f.power != "on" || res.PowerState != PowerOn || !res.Settled {
		t.Fatalf("machine %s, result %+v, BMC calls %v", f.power, res, f.sets)
	}
	if got := strings.Join(f.sets, ","); got != "cycle,on" {
		t.Fatalf("BMC calls %s, want cycle,on", got)
	}
}
