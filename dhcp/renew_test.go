package dhcp

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRenewalWhileStorageFails: while the storage refuses commits, a
// client renewing its committed lease keeps it until the committed
// expiry (ErrNotExtended, with that expiry), never longer; a new client
// and a client asking for another address get nothing; once the storage
// takes commits again, renewals extend the lease.
func TestRenewalWhileStorageFails(t *testing.T) {
	clock := newClock()
	storage := newMemStorage()
	l := openLeases(t, storage, clock, "10.0.0.10", "10.0.0.20")
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	ctx := context.Background()
	ip := mustOffer(t, l, OfferRequest{MAC: m1})
	bound, err := l.Bind(ctx, BindRequest{MAC: m1, IP: ip, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("storage unavailable")
	storage.mu.Lock()
	storage.fail = down
	storage.mu.Unlock()
	clock.Add(20 * time.Minute)

	for _, tt := range []struct {
		name       string
		req        BindRequest
		wantErr    error
		wantLease  bool
		wantExpiry time.Time
	}{
		{"renewal of the committed lease", BindRequest{MAC: m1, IP: ip, TTL: time.Hour}, ErrNotExtended, true, bound.Expires},
		{"the same renewal again", BindRequest{MAC: m1, IP: ip, TTL: time.Hour}, ErrNotExtended, true, bound.Expires},
		{"the client asks for another address", BindRequest{MAC: m1, IP: a("10.0.0.15"), TTL: time.Hour}, down, false, time.Time{}},
		{"a new client", BindRequest{MAC: m2, IP: a("10.0.0.16"), TTL: time.Hour}, down, false, time.Time{}},
	} {
		got, err := l.Bind(ctx, tt.req)
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("%s: err %v, want %v", tt.name, err, tt.wantErr)
		}
		if tt.wantErr != ErrNotExtended && errors.Is(err, ErrNotExtended) {
			t.Fatalf("%s: err %v is not extended, want a failure", tt.name, err)
		}
		if tt.wantLease && (got.IP != ip || got.MAC != m1 || !got.Expires.Equal(tt.wantExpiry) || got.State != LeaseBound) {
			t.Fatalf("%s: lease %+v, want %s bound to %s until %s", tt.name, got, ip, m1, tt.wantExpiry)
		}
	}
	if got, ok := l.Lookup(m1); !ok || !got.Expires.Equal(bound.Expires) {
		t.Fatalf("the allocator holds %+v for %s, want the committed expiry %s", got, m1, bound.Expires)
	}
	// Once the committed lease has run out, no renewal is acknowledged.
	clock.Add(41 * time.Minute)
	if _, err := l.Bind(ctx, BindRequest{MAC: m1, IP: ip, TTL: time.Hour}); err == nil || errors.Is(err, ErrNotExtended) {
		t.Fatalf("renewal after the committed expiry while the storage fails: err %v, want a failure", err)
	}

	storage.mu.Lock()
	storage.fail = nil
	storage.mu.Unlock()
	got, err := l.Bind(ctx, BindRequest{MAC: m1, IP: ip, TTL: time.Hour})
	if err != nil || !got.Expires.Equal(clock.Now().Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("renewal once the storage is back: %+v, %v; want a lease extended by an hour", got, err)
	}
}
