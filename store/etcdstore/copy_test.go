package etcdstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"matchbox/store"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// TestCopyRoundTrip copies an SQLite store into etcd and back into a new
// SQLite store: the catalog (with sources), machines, BMC records, last
// inventories, timelines, what each machine was last served and leases
// come back as they were (storetest.Compare).
func TestCopyRoundTrip(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	openSQLite := func() *store.Store {
		s, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src := openSQLite()
	storetest.Populate(t, src)

	mid := open(t, cluster, "copy")
	if _, err := store.Copy(ctx, src, mid); err != nil {
		t.Fatalf("sqlite → etcd: %v", err)
	}
	dst := openSQLite()
	res, err := store.Copy(ctx, mid, dst)
	if err != nil {
		t.Fatalf("etcd → sqlite: %v", err)
	}
	t.Logf("copied back: %+v", res)

	storetest.Compare(t, src, mid)
	storetest.Compare(t, src, dst)
}
