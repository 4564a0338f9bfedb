package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestDHCPAcrossEtcdInstances runs three `matchbox serve` instances, each
// in its own network namespace on one bridge, sharing a 3-member etcd,
// and has udhcpc clients on the bridge ask them all at once for
// addresses: with disjoint ranges of one subnet (the normal layout: every
// client gets an address from the range of the instance that acknowledged
// it; also with ranges that together hold only a few more addresses than
// the segment has clients) and with the same range on all three (a
// misconfiguration that must stay safe). In both, no address is acknowledged to two MACs, no MAC
// holds two bound leases in etcd, and every acknowledged lease is in etcd.
func TestDHCPAcrossEtcdInstances(t *testing.T) {
	l := newEtcdLab(t)
	for _, tt := range []struct {
		name    string
		ranges  [3]string
		clients int
		// wantAcks is the fewest clients that must get an address.
		wantAcks int
	}{
		// Every instance on the segment offers every client an
		// address; the instances the client did not choose withdraw
		// their offers when its REQUEST names another server.
		{"disjoint", [3]string{"10.77.1.10-10.77.1.49", "10.77.2.10-10.77.2.49", "10.77.3.10-10.77.3.49"}, 24, 24},
		// 20 clients for three ranges of 8: only because the offers
		// not taken are withdrawn at once does every client get an
		// address (held for their 30 s lifetime, they filled every
		// range while the clients' tries lasted).
		{"small", [3]string{"10.77.4.10-10.77.4.17", "10.77.5.10-10.77.5.17", "10.77.6.10-10.77.6.17"}, 20, 20},
		// 28 clients for 20 addresses: the range runs out, and the
		// three allocators race for every address; the offers each
		// instance holds leave some clients without one.
		{"same", [3]string{"10.77.1.10-10.77.1.29", "10.77.1.10-10.77.1.29", "10.77.1.10-10.77.1.29"}, 28, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l.t = t
			var srv []*labServer
			for k := range 3 {
				srv = append(srv, l.serve(k, tt.name, tt.ranges[k]))
			}
			defer func() {
				for _, s := range srv {
					s.stop(15)
				}
			}()
			clients := l.addClients(tt.clients)
			var (
				mu   sync.Mutex
				acks []ack
				fail []string
				wg   sync.WaitGroup
			)
			for _, c := range clients {
				wg.Go(func() {
					a, ok, why := l.dhcp(c.iface, c.mac, 8)
					mu.Lock()
					defer mu.Unlock()
					if ok {
						acks = append(acks, a)
					} else {
						fail = append(fail, why)
					}
				})
			}
			wg.Wait()
			if len(acks) < tt.wantAcks {
				for k, s := range srv {
					t.Logf("instance %d logs:\n%s", k, s.Logs())
				}
				t.Fatalf("%d of %d clients got an address, want at least %d; failures:\n%s", len(acks), tt.clients, tt.wantAcks, strings.Join(fail, "\n"))
			}
			perServer := map[string]int{}
			for _, a := range acks {
				perServer[a.Server]++
				k := strings.LastIndexByte(a.Server, '.')
				var n int
				fmt.Sscan(a.Server[k+1:], &n)
				if n < 2 || n > 4 || !inRange(a.IP, tt.ranges[n-2]) {
					t.Errorf("%s acknowledged %s by server %s, outside that instance's range", a.MAC, a.IP, a.Server)
				}
			}
			t.Logf("%s: %d of %d clients acknowledged, by server: %v", tt.name, len(acks), tt.clients, perServer)
			l.checkUnique(tt.name, acks)
		})
	}
}
