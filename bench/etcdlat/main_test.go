package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeInstances starts n HTTP servers that share one group: a PUT to the
// first stores its hostname, and instance j serves it on /ipxe lag[j]
// after the write (never, when lag[j] < 0).
func fakeInstances(t *testing.T, lag []time.Duration) []string {
	t.Helper()
	var mu sync.Mutex
	var host string
	var at time.Time
	var urls []string
	for j := range lag {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v1/groups/"):
				var g struct {
					Metadata map[string]string `json:"metadata"`
				}
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal(b, &g); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				mu.Lock()
				host, at = g.Metadata["hostname"], time.Now()
				mu.Unlock()
				w.Write([]byte("{}"))
			case r.URL.Path == "/ipxe":
				mu.Lock()
				h, when := host, at
				mu.Unlock()
				if lag[j] >= 0 && time.Since(when) >= lag[j] {
					w.Write([]byte("#!ipxe\nkernel /k hostname=" + h + "\nboot\n"))
					return
				}
				w.Write([]byte("#!ipxe\nkernel /k hostname=old\nboot\n"))
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return urls
}

// TestRun: the instances serve a write 0, 100 and 300 ms after the fake
// records it; a write's "served everywhere" delay is the slowest
// instance's. Delays are measured from the client's receipt of the
// acknowledgement, which comes after the fake recorded the write, so
// they may fall short of a lag by that round trip: the bounds leave
// 100 ms for it.
func TestRun(t *testing.T) {
	urls := fakeInstances(t, []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond})
	c := config{write: urls[0], serve: urls, profile: "node", group: "g", mac: "02:ff:00:00:00:01", n: 5, timeout: 2 * time.Second, poll: time.Millisecond}
	res, err := run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.all) != 5 || len(res.ack) != 5 || len(res.instance) != 3 {
		t.Fatalf("got %d delays, %d acks, %d instances; want 5, 5, 3", len(res.all), len(res.ack), len(res.instance))
	}
	for i, d := range res.all {
		if d < 200*time.Millisecond || d > 2*time.Second {
			t.Errorf("write %d served everywhere after %v, want the slowest instance's lag (300ms, less its round trip)", i, d)
		}
		var slowest time.Duration
		for j := range res.instance {
			slowest = max(slowest, res.instance[j][i])
		}
		if d != slowest {
			t.Errorf("write %d served everywhere after %v, but its slowest instance served it after %v", i, d, slowest)
		}
		if res.instance[0][i] > 100*time.Millisecond {
			t.Errorf("write %d served by the writer after %v, want at once", i, res.instance[0][i])
		}
	}
	var out bytes.Buffer
	report(&out, c, res)
	if !strings.Contains(out.String(), "served everywhere") {
		t.Errorf("report lacks the served-everywhere line:\n%s", out.String())
	}
}

func TestRunNeverServed(t *testing.T) {
	urls := fakeInstances(t, []time.Duration{0, -1})
	c := config{write: urls[0], serve: urls, profile: "node", group: "g", mac: "02:ff:00:00:00:01", n: 1, timeout: 100 * time.Millisecond, poll: time.Millisecond}
	if _, err := run(context.Background(), c); err == nil || !strings.Contains(err.Error(), urls[1]) {
		t.Fatalf("run with an instance that never serves the write: %v, want an error naming %s", err, urls[1])
	}
}

func TestPct(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, c := range []struct{ p, want int }{{50, 50}, {99, 99}, {100, 100}, {1, 1}} {
		if got := pct(ds, c.p); got != time.Duration(c.want) {
			t.Errorf("pct(1..100, %d) = %d, want %d", c.p, got, c.want)
		}
	}
}
