package store

import (
	"context"
	"os"
	"testing"
)

// BenchmarkLoadIndex loads the machine index of the database named by
// MATCHBOX_BENCH_DB (written by bench/gendb: 100,000 machines with
// `go run ./bench/gendb -db DB -data-dir DIR -machines 100000`), as a
// restart does.
func BenchmarkLoadIndex(b *testing.B) {
	path := os.Getenv("MATCHBOX_BENCH_DB")
	if path == "" {
		b.Skip("MATCHBOX_BENCH_DB is not set: name a database written by bench/gendb")
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path, Synchronous: "NORMAL"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := s.index.Len()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.loadIndex(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "machines")
}
