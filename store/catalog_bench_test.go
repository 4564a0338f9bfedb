package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"matchbox/matchbox"
)

// catalogWriters is how many goroutines write at once in
// BenchmarkCatalogWrites, as API clients do.
const catalogWriters = 4

// benchGroup is the n-th group of a benchmark catalog: one machine pinned
// by its MAC, with metadata its profile's templated arguments read.
func benchGroup(n int, prefix string) *Object {
	return &Object{Kind: matchbox.KindGroup, Group: &matchbox.Group{
		ID:       fmt.Sprintf("%s-%06d", prefix, n),
		Profile:  "worker",
		Selector: map[string]string{"mac": fmt.Sprintf("52:%s:%02x:%02x:%02x:%02x", prefix[:2], (n>>24)&0xff, (n>>16)&0xff, (n>>8)&0xff, n&0xff)},
		Metadata: map[string]any{"hostname": fmt.Sprintf("node-%d", n), "rack": n % 40},
	}}
}

// openBenchCatalog opens a store on disk holding a profile with templated
// kernel arguments, an Ignition template and groups groups.
func openBenchCatalog(b *testing.B, groups int) *Store {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(b.TempDir(), "matchbox.db"), Synchronous: os.Getenv("BENCH_SYNC")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	objs := []*Object{
		{Kind: matchbox.TemplateGeneric, Template: &matchbox.Template{Kind: matchbox.TemplateGeneric, Name: "worker.sh", Content: "hostname {{.hostname}}\n"}},
		{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "worker", GenericID: "worker.sh", Boot: matchbox.Boot{Kernel: "/assets/vmlinuz", Initrd: []string{"/assets/initrd.img"}, Args: []string{"hostname={{.hostname}}", "rack={{.rack}}", "console=ttyS0"}}}},
	}
	for i := 0; i < groups; i++ {
		objs = append(objs, benchGroup(i, "aa"))
	}
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error {
		for _, o := range objs {
			if _, err := c.Put(o, 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCatalogWrites measures single-object catalog writes (one group
// created per write, as an API client does) by catalogWriters writers at
// once, on catalogs of 0, 1,000 and 10,000 groups (plus the at most 256
// groups the writes create and then update). It reports writes/s.
func BenchmarkCatalogWrites(b *testing.B) {
	for _, groups := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			s := openBenchCatalog(b, groups)
			ctx := context.Background()
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < catalogWriters; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(1) - 1
						if n >= int64(b.N) {
							return
						}
						// Writes cycle over 256 groups of their own, so
						// the catalog keeps its size while measured.
						o := benchGroup(int(n%256), "bb")
						o.Group.Metadata["generation"] = n
						if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error {
							_, err := c.Put(o, 0)
							return err
						}); err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if err, ok := failed.Load().(error); ok {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
