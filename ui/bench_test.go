package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"matchbox/matchbox"
)

// BenchmarkFleetFirstPage measures the fleet page's first page (100
// machines, their last events, the counts per state) with 100,000 machines
// in the store, each with a boot event. Goal: under 200 ms.
func BenchmarkFleetFirstPage(b *testing.B) {
	const machines = 100_000
	c := newConsole(b, false)
	ctx := context.Background()
	start := time.Now()
	at := time.Now().Add(-time.Hour)
	for i := 0; i < machines; i += 2000 {
		evs := make([]matchbox.BootEvent, 0, 2000)
		for j := i; j < i+2000 && j < machines; j++ {
			evs = append(evs, matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", j>>16, (j>>8)&0xff, j&0xff), Type: "dhcp.discover", At: at})
		}
		if err := c.store.DiscoverAndAppendEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d machines stored in %v", machines, time.Since(start).Round(time.Millisecond))
	for _, q := range []string{"", "?state=discovered"} {
		b.Run("query="+strings.TrimPrefix(q, "?"), func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/ui/"+q, nil)
				req.RemoteAddr = "127.0.0.1:40000"
				rec := httptest.NewRecorder()
				c.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "100000 machines") {
					b.Fatalf("fleet page: %d %.300s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
