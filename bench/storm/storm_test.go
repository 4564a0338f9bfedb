package storm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
)

func TestParseIPXE(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		kernel       string
		initrds      []string
	}{
		{"matchbox", "#!ipxe\nkernel /assets/vmlinuz initrd=initrd.img console=ttyS0\ninitrd /assets/initrd.img\nboot\n",
			"/assets/vmlinuz", []string{"/assets/initrd.img"}},
		{"options skipped", "kernel --name vmlinuz http://h/k a=b\ninitrd --name i1 http://h/i1\ninitrd http://h/i2\n",
			"http://h/k", []string{"http://h/i1", "http://h/i2"}},
		{"chain only", "#!ipxe\nchain http://h/ipxe?mac=${mac}\n", "", nil},
		{"first kernel wins", "kernel /a\nkernel /b\n", "/a", nil},
		{"empty", "", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, i := ParseIPXE(tt.script)
			if k != tt.kernel {
				t.Errorf("kernel %q, want %q", k, tt.kernel)
			}
			if diff := cmp.Diff(tt.initrds, i); diff != "" {
				t.Errorf("initrds (-want +got):\n%s", diff)
			}
		})
	}
}

// bootServers serves, on loopback, a TFTP file and the HTTP boot chain of
// matchbox (boot.ipxe, ipxe script, kernel, initrd, config), counting the
// config requests; the config of the MAC ending :03 answers 500.
func bootServers(t *testing.T) (tftpAddr, httpBase string, configs *atomic.Int32) {
	t.Helper()
	configs = new(atomic.Int32)
	mux := http.NewServeMux()
	mux.HandleFunc("/boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "#!ipxe\nchain ipxe?mac=${mac}\n")
	})
	mux.HandleFunc("/ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "#!ipxe\nkernel /assets/vmlinuz-${mac:hexhyp} initrd=initrd.img\ninitrd /assets/initrd.img\nboot\n")
	})
	mux.HandleFunc("/assets/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/assets/vmlinuz-52-54-01-") {
			w.Write(bytes.Repeat([]byte("k"), 64<<10))
			return
		}
		if r.URL.Path == "/assets/initrd.img" {
			w.Write(bytes.Repeat([]byte("i"), 128<<10))
			return
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("/ignition", func(w http.ResponseWriter, r *http.Request) {
		configs.Add(1)
		if strings.HasSuffix(r.URL.Query().Get("mac"), ":03") {
			http.Error(w, "render failed", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, `{"ignition":{"version":"3.3.0"}}`)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		if name != "undionly.kpxe" {
			return os.ErrNotExist
		}
		_, err := rf.ReadFrom(bytes.NewReader(bytes.Repeat([]byte("x"), 70<<10)))
		return err
	}, nil)
	go ts.Serve(conn)
	t.Cleanup(ts.Shutdown)
	return conn.LocalAddr().String(), hs.URL, configs
}

// TestRunTFTPAndHTTP storms loopback servers (no DHCP, which needs a raw
// socket): every machine goes through every stage, the one whose config
// fails is counted at that stage, and the bytes add up.
func TestRunTFTPAndHTTP(t *testing.T) {
	tftpAddr, httpBase, configs := bootServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Machines: 8, Concurrency: 4, TFTPAddr: tftpAddr, HTTPBase: httpBase, StageTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Completed != 7 || rep.Failed != 1 {
		t.Errorf("completed %d failed %d, want 7 and 1", rep.Completed, rep.Failed)
	}
	if got := configs.Load(); got != 8 {
		t.Errorf("%d config requests, want 8", got)
	}
	for _, st := range []string{StageTFTP, StageBootIPXE, StageIPXE, StageKernel, StageInitrd} {
		if s := rep.Stages[st]; s.Count != 8 || s.Failed != 0 {
			t.Errorf("stage %s: %+v, want 8 ok, 0 failed", st, s)
		}
	}
	if s := rep.Stages[StageConfig]; s.Count != 7 || s.Failed != 1 {
		t.Errorf("stage config: %+v, want 7 ok, 1 failed", s)
	}
	for name, s := range rep.Stages {
		if s.Peak < 1 || s.Peak > 4 {
			t.Errorf("stage %s: peak %d in flight, want 1..4 (concurrency 4)", name, s.Peak)
		}
	}
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "52:54:01:00:00:03: config:") || !strings.Contains(rep.Failures[0], "500") {
		t.Errorf("failures %q, want the config of 52:54:01:00:00:03 answering 500", rep.Failures)
	}
	// 8 machines: 70 KiB TFTP, 64 KiB kernel, 128 KiB initrd, plus scripts and configs.
	if min := int64(8 * (70 + 64 + 128) << 10); rep.Bytes < min {
		t.Errorf("%d bytes received, want at least %d", rep.Bytes, min)
	}
}

// TestRunBoundedWhenNothingAnswers storms addresses where nothing answers:
// every machine fails at its first stage within the stage timeout, and the
// storm ends.
func TestRunBoundedWhenNothingAnswers(t *testing.T) {
	// A UDP port nobody reads and an HTTP server that never answers.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer hs.Close()
	defer close(block)
	for _, tt := range []struct {
		name  string
		cfg   Config
		stage string
	}{
		{"tftp silent", Config{TFTPAddr: conn.LocalAddr().String()}, StageTFTP},
		{"http hangs", Config{HTTPBase: hs.URL}, StageBootIPXE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Machines, tt.cfg.StageTimeout = 3, 500*time.Millisecond
			t0 := time.Now()
			rep, err := Run(context.Background(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("storm took %s with a 500ms stage timeout", d)
			}
			if s := rep.Stages[tt.stage]; rep.Failed != 3 || s.Failed != 3 {
				t.Errorf("failed %d, stage %s %+v: want all 3 failed there", rep.Failed, tt.stage, s)
			}
		})
	}
}

// TestPeak: the most stages in flight at once, from their spans.
func TestPeak(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name  string
		spans []span
		want  int
	}{
		{"none", nil, 0},
		{"one", []span{{at(0), at(5)}}, 1},
		{"disjoint", []span{{at(0), at(1)}, {at(2), at(3)}, {at(4), at(5)}}, 1},
		{"one ends as the next starts", []span{{at(0), at(2)}, {at(2), at(4)}}, 1},
		{"nested", []span{{at(0), at(10)}, {at(1), at(9)}, {at(2), at(3)}, {at(4), at(5)}}, 3},
		{"staggered", []span{{at(0), at(4)}, {at(1), at(5)}, {at(2), at(6)}, {at(5), at(7)}}, 3},
		{"all at once", []span{{at(0), at(1)}, {at(0), at(1)}, {at(0), at(1)}, {at(0), at(1)}}, 4},
	} {
		if got := peak(tc.spans); got != tc.want {
			t.Errorf("%s: peak %d, want %d", tc.name, got, tc.want)
		}
	}
}
