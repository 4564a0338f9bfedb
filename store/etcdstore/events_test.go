package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/etcdstore"
	"matchbox/store/etcdstore/etcdtest"
)

// TestEventRetention: a timeline keeps its newest EventsPerMachine events,
// and events leave etcd when their lease expires after EventRetention.
func TestEventRetention(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	s, err := etcdstore.Open(ctx, etcdstore.Config{Client: cluster.Client(t), Prefix: "site", EventsPerMachine: 10, EventRetention: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m"}, -1); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for b := range 5 {
		var evs []matchbox.BootEvent
		for i := range 5 {
			n := b*5 + i
			evs = append(evs, matchbox.BootEvent{MachineID: "m", Type: fmt.Sprintf("test.e%02d", n), At: t0.Add(time.Duration(n) * time.Millisecond)})
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Events(ctx, "m", store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if len(types) != 10 || types[0] != "test.e15" || types[9] != "test.e24" {
		t.Errorf("timeline bounded to 10 events holds %v, want test.e15 … test.e24", types)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := s.Events(ctx, "m", store.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Logf("events gone %v after they were written (retention 2s, lease TTL 3s)", time.Since(t0).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still stored 15s after they were written with a retention of 2s", len(got))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, _, err := s.Machine(ctx, "m"); err != nil {
		t.Errorf("the machine went with its events: %v", err)
	}
}

// BenchmarkAppendEvents measures timeline writes into a 3-member etcd on
// this machine: batches of 512 events (as the recorder writes them) over
// 200 machines. It reports events/s and how much etcd's database grows
// per 1,000 events (before compaction).
func BenchmarkAppendEvents(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	ctx := context.Background()
	cli := cluster.Client(b)
	s, err := etcdstore.Open(ctx, etcdstore.Config{Client: cli, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	const machines, batch = 200, 512
	for i := range machines {
		if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: fmt.Sprintf("m%03d", i)}, -1); err != nil {
			b.Fatal(err)
		}
	}
	detail := map[string]any{"ip": "10.0.0.10", "xid": "0x1234abcd", "status": 200}
	evs := make([]matchbox.BootEvent, batch)
	dbSize := func() int64 {
		st, err := cli.Status(ctx, cluster.Endpoints[0])
		if err != nil {
			b.Fatal(err)
		}
		return st.DbSize
	}
	before := dbSize()
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n++ {
		for i := range evs {
			evs[i] = matchbox.BootEvent{MachineID: fmt.Sprintf("m%03d", (n*batch+i)%machines), Type: "dhcp.ack", Detail: detail}
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	total := float64(b.N * batch)
	b.ReportMetric(total/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(dbSize()-before)/total*1000, "dbbytes/1000events")
}
