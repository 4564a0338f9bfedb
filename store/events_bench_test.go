package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"matchbox/matchbox"
)

// BenchmarkDiscoverEvents measures the recorder's transaction for new DHCP
// clients, per machine created: each new MAC with two events (dhcp.offer
// and dhcp.ack, as the DHCP server records an exchange) or one, in
// transactions of the given number of events. cpu-ns/machine is the
// process's CPU (getrusage), steadier than wall time on a shared machine.
func BenchmarkDiscoverEvents(b *testing.B) {
	for _, perMAC := range []int{1, 2} {
		for _, tx := range []int{64, 512} {
			b.Run(fmt.Sprintf("events-per-mac=%d/tx=%d", perMAC, tx), func(b *testing.B) {
				ctx := context.Background()
				s, err := Open(ctx, Config{Path: filepath.Join(b.TempDir(), "matchbox.db"), Synchronous: os.Getenv("BENCH_SYNC")})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				n := 0
				at := time.Now()
				evs := make([]matchbox.BootEvent, 0, tx)
				b.ResetTimer()
				cpu0 := processCPU(b)
				for made := 0; made < b.N; {
					evs = evs[:0]
					for len(evs)+perMAC <= tx && made < b.N {
						mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
						n++
						made++
						if perMAC == 2 {
							evs = append(evs, matchbox.BootEvent{MAC: mac, Type: "dhcp.offer", At: at, Detail: map[string]any{"request": "discover", "ip": "10.0.0.1"}})
						}
						evs = append(evs, matchbox.BootEvent{MAC: mac, Type: "dhcp.ack", At: at, Detail: map[string]any{"request": "request", "ip": "10.0.0.1"}})
					}
					if err := s.DiscoverAndAppendEvents(ctx, evs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/machine")
			})
		}
	}
}
