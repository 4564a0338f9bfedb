package boothttp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"matchbox/matchbox"
)

// TestRequestLog: every boot request is one log line with method, path,
// status, client address and duration, at DEBUG when it succeeds and INFO
// for a 4xx; a client-caused failure (a profile without the config asked
// for) logs its cause at WARN, a server-side one at ERROR.
func TestRequestLog(t *testing.T) {
	snap, err := matchbox.Build(testCatalog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	tests := []struct {
		target      string
		status      int
		accessLevel string
		causeLevel  string // level of the "boot endpoint failed" line; "" for none
	}{
		{"/ipxe?mac=52:54:00:a1:9c:ae", 200, "DEBUG", ""},
		{"/ignition?mac=52:54:00:00:00:09", 404, "INFO", "WARN"}, // profile "discovery" has no ignition_id
		{"/generic?mac=52:54:00:00:00:09", 404, "INFO", "WARN"},
		{"/ignition?uuid=broken-uuid", 500, "WARN", "ERROR"},
		{"/boot.ipxe", 200, "DEBUG", ""},
	}
	for _, tc := range tests {
		buf.Reset()
		req := httptest.NewRequest(http.MethodGet, tc.target, nil)
		req.RemoteAddr = "192.0.2.7:4242"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.target, w.Code, tc.status)
		}
		lines := map[string]map[string]any{}
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: log line %q: %v", tc.target, l, err)
			}
			lines[m["msg"].(string)] = m
			if m["level"] == "ERROR" && tc.status < 500 {
				t.Errorf("%s: a %d logged at ERROR: %s", tc.target, tc.status, l)
			}
		}
		acc, ok := lines["boot request"]
		if !ok {
			t.Fatalf("%s: no boot request line in\n%s", tc.target, buf.String())
		}
		path, _, _ := strings.Cut(tc.target, "?")
		if acc["level"] != tc.accessLevel || acc["method"] != "GET" || acc["path"] != path || acc["status"] != float64(tc.status) ||
			acc["remote"] != "192.0.2.7:4242" || acc["duration"] == nil {
			t.Errorf("%s: boot request line %v, want level %s, method, path %s, status %d, remote and duration", tc.target, acc, tc.accessLevel, path, tc.status)
		}
		cause, ok := lines["boot endpoint failed"]
		if tc.causeLevel == "" && ok {
			t.Errorf("%s: unexpected failure line %v", tc.target, cause)
		}
		if tc.causeLevel != "" && (!ok || cause["level"] != tc.causeLevel) {
			t.Errorf("%s: failure line %v, want it at %s", tc.target, cause, tc.causeLevel)
		}
	}

	// A refused method is logged too.
	buf.Reset()
	req := httptest.NewRequest(http.MethodPost, "/ipxe", nil)
	req.URL.Path = "/ipxe"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed || !strings.Contains(buf.String(), `"status":405`) {
		t.Errorf("POST /ipxe: %d, log %s", w.Code, buf.String())
	}
}
