package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/store"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// TestStoreCopyCLI round-trips a populated SQLite database through a real
// 3-member etcd cluster and back with the real binary: the catalog,
// machines, BMC records, inventories, timelines and leases come back as
// they were; a copy into a non-empty destination is refused with exit 2
// and writes nothing, unless --force; a missing source is exit 1.
func TestStoreCopyCLI(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	dir := t.TempDir()
	srcPath, backPath := filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	src, err := store.Open(ctx, store.Config{Path: srcPath})
	if err != nil {
		t.Fatal(err)
	}
	leases := storetest.Populate(t, src)
	src.Close()

	var hosts []string
	for _, e := range cluster.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	etcdURL := "etcd://" + strings.Join(hosts, ",") + "/copied"

	code, out, errOut := runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL)
	if code != 0 {
		t.Fatalf("copy sqlite → etcd: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"profiles     2", "groups       1", "generic      1", "machines     3", "bmc-records  2", "inventories  3", "events       6", "leases       3"} {
		if !strings.Contains(out, want) {
			t.Errorf("copy sqlite → etcd prints no %q:\n%s", want, out)
		}
	}
	code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL)
	if code != copyRefused || !strings.Contains(errOut, "not empty") {
		t.Errorf("copy into a non-empty etcd prefix: exit %d, want %d\n%s%s", code, copyRefused, out, errOut)
	}
	if code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL, "--force"); code != 0 {
		t.Errorf("copy --force into a non-empty etcd prefix: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+filepath.Join(dir, "missing.db"), "--to", "sqlite://"+filepath.Join(dir, "x.db"))
	if code != copyFailed || !strings.Contains(errOut, "missing.db") {
		t.Errorf("copy from a missing SQLite file: exit %d, want %d\n%s%s", code, copyFailed, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("copy from a missing SQLite file created it")
	}

	if code, out, errOut = runCLI(t, nil, "store", "copy", "--from", etcdURL, "--to", "sqlite://"+backPath); code != 0 {
		t.Fatalf("copy etcd → sqlite: exit %d\n%s%s", code, out, errOut)
	}

	before, err := store.Open(ctx, store.Config{Path: srcPath})
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	after, err := store.Open(ctx, store.Config{Path: backPath})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	storetest.Compare(t, before, after)
	if got, err := after.LoadLeases(ctx); err != nil || len(got) != len(leases) {
		t.Errorf("leases after sqlite → etcd → sqlite: %d (%v), want %d", len(got), err, len(leases))
	}
}
