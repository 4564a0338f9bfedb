package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"matchbox/api/wire"
	"matchbox/store/etcdstore/etcdtest"
)

// TestServeOnEtcd runs two `matchbox serve` instances on one 3-member etcd
// cluster: a catalog write through one instance's API is answered by the
// other's boot endpoint within 1 s (p50 and p99 logged), a machine
// discovered through one is known to the other with its timeline, both
// are listed by `matchbox get instances`, and one killed with SIGKILL is
// dropped from the list within its registration's TTL.
func TestServeOnEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	var hosts []string
	for _, e := range cluster.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	loc := "etcd://" + strings.Join(hosts, ",") + "/site"
	data := t.TempDir() // every instance imports the same data directory
	const ttl = 2 * time.Second
	a := startServer(t, "--data-dir", data, "--store", loc, "--assets-dir", "-", "--etcd-instance-ttl", ttl.String())
	b := startServer(t, "--data-dir", data, "--store", loc, "--assets-dir", "-", "--etcd-instance-ttl", ttl.String(), "--api-addr", "127.0.0.1:0")

	put := func(url, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, url, bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("PUT %s: %s", url, resp.Status)
		}
	}
	const mac = "52:54:00:00:00:01"
	const rounds = 20
	var delays []time.Duration
	for i := range rounds {
		put(fmt.Sprintf("%s/api/v1/profiles/p%d", a.URL, i), fmt.Sprintf(`{"id": "p%d", "boot": {"kernel": "/k/p%d"}}`, i, i))
		put(a.URL+"/api/v1/groups/g", fmt.Sprintf(`{"id": "g", "profile": "p%d", "selector": {"mac": %q}}`, i, mac))
		acked := time.Now()
		for {
			_, body := httpGet(t, b.URL+"/ipxe?mac="+mac)
			if strings.Contains(body, fmt.Sprintf("/k/p%d ", i)) || strings.Contains(body, fmt.Sprintf("/k/p%d\n", i)) {
				break
			}
			if time.Since(acked) > time.Second {
				t.Fatalf("round %d: a group written through one instance is not served by the other within 1s; it answers:\n%s", i, body)
			}
			time.Sleep(time.Millisecond)
		}
		delays = append(delays, time.Since(acked))
	}
	slices.Sort(delays)
	t.Logf("catalog write acknowledged by one instance → served by the other's /ipxe: p50 %v, p99 %v over %d writes",
		delays[len(delays)/2], delays[len(delays)*99/100], rounds)

	// The machine that asked instance b for /ipxe was discovered there;
	// instance a knows it and its timeline.
	id := strings.ReplaceAll(mac, ":", "-")
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := httpGet(t, a.URL+"/api/v1/machines/"+id)
		_, evs := httpGet(t, a.URL+"/api/v1/machines/"+id+"/events")
		if code == http.StatusOK && strings.Contains(evs, "http.ipxe") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine discovered through one instance unknown to the other after 5s: %d\n%s\nlogs of b:\n%s", code, evs, b.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	instances := func() []wire.Item {
		t.Helper()
		_, body := httpGet(t, a.URL+"/api/v1/instances")
		var l wire.List
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatalf("GET /api/v1/instances: %v\n%s", err, body)
		}
		return l.Items
	}
	listed := instances()
	if len(listed) != 2 {
		t.Fatalf("GET /api/v1/instances lists %d instances, want 2: %+v", len(listed), listed)
	}
	var bID string
	for _, it := range listed {
		if len(it.Instance.Addresses) == 2 { // b has its own API listener
			bID = it.ID
		}
	}
	if bID == "" {
		t.Fatalf("no listed instance has b's two addresses: %+v", listed)
	}
	code, out, errOut := runCLI(t, []string{"MATCHBOX_ENDPOINT=" + a.URL}, "get", "instances")
	if code != 0 || !strings.Contains(out, bID) || strings.Count(out, "\n") != 3 {
		t.Fatalf("matchbox get instances: exit %d\n%s%s", code, out, errOut)
	}
	killed := time.Now()
	b.Cmd.Process.Kill()
	for {
		n := len(instances())
		if n == 1 {
			t.Logf("instance killed with SIGKILL dropped from the list after %v (TTL %v)", time.Since(killed).Round(10*time.Millisecond), ttl)
			break
		}
		if time.Since(killed) > ttl+time.Second {
			t.Fatalf("instance killed with SIGKILL still listed %v later (TTL %v)", time.Since(killed), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
