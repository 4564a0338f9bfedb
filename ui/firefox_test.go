package ui_test

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/internal/needs"
	"matchbox/matchbox"
)

// TestFirefoxSmoke renders each console page in Debian's headless Firefox
// ESR (`firefox-esr --headless --screenshot`): no WebDriver (geckodriver)
// is packaged for Debian 12 or installable here, so Firefox is not driven,
// only made to load each page. It must fetch the page, its stylesheet and
// its script, run the script (the machine page's live timeline opens its
// event stream), and write a 1280-pixel-wide picture.
func TestFirefoxSmoke(t *testing.T) {
	firefox, err := exec.LookPath("firefox-esr")
	if err != nil {
		needs.Skip(t, "firefox-esr not installed (Debian package firefox-esr): skipping the Firefox smoke test")
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	c := newConsoleOpts(t, consoleOpts{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.UserAgent(), "Firefox/") {
				mu.Lock()
				seen[r.URL.Path] = true
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}})
	c.putCatalog(t, testCatalog()...)
	c.putMachine(t, &matchbox.Machine{ID: "node1", MACs: []string{"52:54:00:00:10:01"}, State: matchbox.StateReady, Labels: map[string]string{"rack": "r1"}})
	if err := c.store.AppendEvents(context.Background(), []matchbox.BootEvent{{MachineID: "node1", Type: "dhcp.ack", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	shots := screenshotDir(t)
	home := t.TempDir()
	profile := filepath.Join(home, "profile")
	if err := os.Mkdir(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ name, path string }{
		{"fleet", "/ui/"},
		{"machine", "/ui/machines/node1"},
		{"groups", "/ui/groups?machine=node1"},
		{"events", "/ui/events"},
	} {
		out := filepath.Join(shots, "firefox-"+p.name+".png")
		os.Remove(out)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, firefox, "--headless", "--no-remote", "--profile", profile, "--screenshot", out, "--window-size=1280,900", c.srv.URL+p.path)
		cmd.Env = append(os.Environ(), "HOME="+home, "MOZ_HEADLESS=1")
		start := time.Now()
		msg, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("firefox-esr on %s: %v\n%s", p.path, err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("firefox-esr on %s wrote no screenshot: %v\n%s", p.path, err, msg)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("screenshot of %s: %v", p.path, err)
		}
		if w := img.Bounds().Dx(); w != 1280 {
			t.Errorf("screenshot of %s is %d px wide, want 1280", p.path, w)
		}
		t.Logf("Firefox rendered %s in %v", p.path, time.Since(start).Round(100*time.Millisecond))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range []string{"/ui/", "/ui/machines/node1", "/ui/groups", "/ui/events", "/ui/static/app.css", "/ui/static/app.js", "/ui/machines/node1/stream", "/ui/events/stream"} {
		if !seen[path] {
			t.Errorf("Firefox never requested %s", path)
		}
	}
	if t.Failed() {
		t.Logf("Firefox requested %v", seen)
	}
}
