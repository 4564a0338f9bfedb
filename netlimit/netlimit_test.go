package netlimit

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestDefaultMaxFor(t *testing.T) {
	tests := []struct {
		files     uint64
		listeners int
		want      int
	}{
		{20000, 2, 4936},
		{20000, 1, 9872},
		{1024, 2, 192},
		{300, 1, 64},
		{0, 0, 64},
		{1 << 40, 1, (1<<24 - 256) / 2},
	}
	for _, tt := range tests {
		if got := DefaultMaxFor(tt.files, tt.listeners); got != tt.want {
			t.Errorf("DefaultMaxFor(%d, %d) = %d, want %d", tt.files, tt.listeners, got, tt.want)
		}
	}
	if _, err := New(nil, Config{Max: 1}); err == nil {
		t.Error("New with Max 1: no error")
	}
}

// TestSlowClientsCannotStarveAShortRequest fills every slot of a listener
// with clients that never send a byte (and many more waiting behind them):
// a short request still gets its answer within a few fast-lane timeouts, and
// the listener never holds more than Max connections.
func TestSlowClientsCannotStarveAShortRequest(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const max = 16
	ln, err := New(inner, Config{Max: max, Reserve: 4, FastTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: time.Minute, // slow clients hold ordinary slots this long
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for i := 0; i < 3*max; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		slow = append(slow, c)
		if i%2 == 0 {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n") // a header, never finished
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := ln.Open(); n > max {
		t.Fatalf("%d connections open, limit %d", n, max)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, err := getRetrying(client, "http://"+inner.Addr().String()+"/healthz", 5*time.Second)
		if err != nil {
			t.Fatalf("short request %d behind %d slow clients: %v", i, len(slow), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Fatalf("short request %d: %q", i, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("short request %d took %v", i, d)
		}
		if n := ln.Open(); n > max {
			t.Fatalf("%d connections open, limit %d", n, max)
		}
	}
	if ln.FastAdmitted() == 0 || ln.Refused() == 0 {
		t.Errorf("fast lane admitted %d, refused %d: want both", ln.FastAdmitted(), ln.Refused())
	}
}

// getRetrying is a health probe's GET: a refused connection is tried again
// until within has passed.
func getRetrying(client *http.Client, url string, within time.Duration) (*http.Response, error) {
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil || time.Now().After(deadline) {
			return resp, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
