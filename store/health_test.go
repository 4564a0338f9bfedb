package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/dhcp"
	"matchbox/matchbox"
)

// sqliteErr runs stmt on a fresh connection to dsn and returns its error.
func sqliteErr(t *testing.T, dsn string, stmts ...string) error {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			return err
		}
	}
	return nil
}

// TestClassifySQLiteErrors feeds real SQLite errors to the classifier: a
// full database (max_page_count reached: SQLITE_FULL), a read-only one
// (SQLITE_READONLY), one that cannot be opened (SQLITE_CANTOPEN), and one
// that says nothing about the storage.
func TestClassifySQLiteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	if err := sqliteErr(t, "file:"+path, "CREATE TABLE t (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		dsn    string
		stmts  []string
		want   error
		reason string
	}{
		{"full", "file:" + path, []string{"PRAGMA max_page_count = 3", "INSERT INTO t VALUES (randomblob(100000))"}, ErrStorageFull, ReasonFull},
		{"read-only", "file:" + path + "?mode=ro", []string{"INSERT INTO t VALUES (1)"}, ErrUnavailable, ReasonUnavailable},
		{"cannot open", "file:" + filepath.Join(dir, "no", "such", "dir.db"), []string{"CREATE TABLE u (a)"}, ErrUnavailable, ReasonUnavailable},
		{"not storage", "file:" + path, []string{"INSERT INTO nosuch VALUES (1)"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := sqliteErr(t, tc.dsn, tc.stmts...)
			if raw == nil {
				t.Fatal("statement did not fail")
			}
			got := classifySQLite(fmt.Errorf("commit: %w", raw), path)
			if tc.want != nil && !errors.Is(got, tc.want) {
				t.Fatalf("classified %v, want it to wrap %v", got, tc.want)
			}
			if !errors.Is(got, raw) {
				t.Fatalf("classified %v lost its cause %v", got, raw)
			}
			if r := Reason(got); r != tc.reason {
				t.Fatalf("Reason(%v) = %q, want %q", got, r, tc.reason)
			}
		})
	}
}

// TestFullStoreRefusesWritesAndRecovers fills the database (SQLite's
// max_page_count stands for the disk): a catalog write and a lease commit
// fail wrapping ErrStorageFull, store nothing, leave the snapshot as it
// was and make Health degraded; the probe fails too. With room again, the
// probe makes Health healthy without any other write, and writes succeed.
func TestFullStoreRefusesWritesAndRecovers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	var changes []string
	s.Health().OnChange(func(hs HealthState) { changes = append(changes, hs.Reason) })
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(profileObj("before"), -1); return err }); err != nil {
		t.Fatal(err)
	}
	// The pages of tables a migration dropped are free and would take a
	// small write: without them, page_count is every page in use.
	if _, err := s.write.ExecContext(ctx, "VACUUM"); err != nil {
		t.Fatal(err)
	}
	var pages int64
	if err := s.write.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := profileObj("big")
	big.Profile.Boot.Args = []string{strings.Repeat("x", 64<<10)}
	snap := s.Snapshot()
	_, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(big, -1); return err })
	if !errors.Is(err, ErrStorageFull) {
		t.Fatalf("write on a full store: %v, want ErrStorageFull", err)
	}
	if s.Snapshot() != snap {
		t.Fatal("a refused write swapped the snapshot")
	}
	hs := s.Health().State()
	if hs.Reason != ReasonFull || hs.Cause == "" || hs.Since.IsZero() {
		t.Fatalf("health after a full write: %+v", hs)
	}
	leases := make([]dhcp.LeaseWrite, 200)
	for i := range leases {
		leases[i] = dhcp.LeaseWrite{Lease: dhcp.Lease{
			IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff),
			Hostname: strings.Repeat("h", 200), Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound,
		}}
	}
	if err := s.CommitLeases(ctx, leases); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("lease commit on a full store: %v, want ErrStorageFull", err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM leases").Scan(&n); err != nil || n != 0 {
		t.Fatalf("leases stored by a refused commit: %d (%v)", n, err)
	}
	err = s.ViewCatalog(ctx, func(c CatalogTx) error { _, err := c.Get(matchbox.KindProfile, "big"); return err })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("profile of a refused write: %v, want ErrNotFound", err)
	}
	if err := s.Probe(ctx); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("probe on a full store: %v", err)
	}
	// A conflict says nothing about the storage: still degraded.
	s.Health().Observe(fmt.Errorf("x: %w", ErrVersionConflict))
	if !s.Health().State().Degraded() {
		t.Fatal("a version conflict cleared the degraded state")
	}

	// Room again: the probe alone recovers.
	if _, err := s.write.ExecContext(ctx, "PRAGMA max_page_count = 1000000"); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Health().Run(runCtx, 20*time.Millisecond, s.Probe) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Health().State().Degraded() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if hs := s.Health().State(); hs.Degraded() {
		t.Fatalf("still degraded after space returned: %+v", hs)
	}
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(big, -1); return err }); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if err := s.CommitLeases(ctx, leases); err != nil {
		t.Fatalf("lease commit after recovery: %v", err)
	}
	if want := []string{ReasonFull, ""}; strings.Join(changes, ",") != strings.Join(want, ",") {
		t.Fatalf("health changes %q, want %q (one per change)", changes, want)
	}
}

// TestHealthRunProbesOnlyWhileDegraded: a healthy store is never probed;
// a degraded one is, until a probe succeeds.
func TestHealthRunProbesOnlyWhileDegraded(t *testing.T) {
	var h Health
	probes := make(chan struct{}, 100)
	fail := make(chan bool, 1)
	fail <- true
	probe := func(context.Context) error {
		probes <- struct{}{}
		f := <-fail
		fail <- f
		if f {
			return fmt.Errorf("probe: %w", ErrUnavailable)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx, 10*time.Millisecond, probe) }()
	time.Sleep(60 * time.Millisecond)
	if len(probes) != 0 {
		t.Fatalf("a healthy store was probed %d times", len(probes))
	}
	h.Observe(fmt.Errorf("write: %w", ErrUnavailable))
	if got := h.State().Reason; got != ReasonUnavailable {
		t.Fatalf("reason %q", got)
	}
	time.Sleep(60 * time.Millisecond)
	if len(probes) < 2 {
		t.Fatalf("a degraded store was probed %d times in 60ms (every 10ms)", len(probes))
	}
	<-fail
	fail <- false
	deadline := time.Now().Add(2 * time.Second)
	for h.State().Degraded() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h.State().Degraded() {
		t.Fatal("a successful probe did not recover")
	}
	for len(probes) > 0 {
		<-probes
	}
	time.Sleep(60 * time.Millisecond)
	if len(probes) > 1 {
		t.Fatalf("probed %d times after recovery", len(probes))
	}
	cancel()
	<-done
}

// TestRecorderCountsFailuresOnAFullStore: on a full store every batch of
// boot events fails; the events are counted as failed, one warning per
// interval says how many, and the recorder goes on (and writes again once
// there is room).
func TestRecorderCountsFailuresOnAFullStore(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	var pages int64
	if err := s.write.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	const interval = 300 * time.Millisecond
	rec := NewRecorder(s, RecorderConfig{Discover: true, DropLogInterval: interval, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rec.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	i := 0
	record := func() {
		rec.Record(matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff), Type: "http.ipxe", At: time.Now()})
		rec.Sync(ctx)
		i++
	}
	// The first events may fit in pages the database has.
	for deadline := time.Now().Add(10 * time.Second); rec.Failed() == 0 && time.Now().Before(deadline); {
		record()
	}
	time.Sleep(interval + 50*time.Millisecond)
	before := strings.Count(logs.String(), "boot events lost")
	for start := time.Now(); time.Since(start) < 4*interval; {
		record()
	}
	time.Sleep(interval + 50*time.Millisecond)
	warnings := strings.Count(logs.String(), "boot events lost") - before
	if rec.Failed() < 4 {
		t.Fatalf("failed events counted: %d", rec.Failed())
	}
	if warnings < 3 || warnings > 6 || before < 1 {
		t.Fatalf("%d warnings (%d before) for %d failed batches over about 5 intervals, want one per interval:\n%s", warnings, before, rec.Failed(), logs.String())
	}
	if !strings.Contains(logs.String(), "storage full") {
		t.Fatalf("warnings do not name the cause:\n%s", logs.String())
	}
	if s.Health().State().Reason != ReasonFull {
		t.Fatalf("health: %+v", s.Health().State())
	}
	if _, err := s.write.ExecContext(ctx, "PRAGMA max_page_count = 1000000"); err != nil {
		t.Fatal(err)
	}
	failed := rec.Failed()
	rec.Record(matchbox.BootEvent{MAC: "52:54:00:ff:ff:ff", Type: "http.ipxe", At: time.Now()})
	rec.Sync(ctx)
	if rec.Failed() != failed || s.Health().State().Degraded() {
		t.Fatalf("after room returned: failed %d (was %d), health %+v", rec.Failed(), failed, s.Health().State())
	}
}
