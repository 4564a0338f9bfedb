package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAgentTokenOnlyWhileDiscoveringOrProvisioning asks the real server's
// /metadata and /ipxe for one machine in each lifecycle state: the agent
// token is rendered for a machine not known yet, discovered or
// provisioning, and is empty once it is ready, provisioned or failed.
func TestAgentTokenOnlyWhileDiscoveringOrProvisioning(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, "--data-dir", "../..", "--db", filepath.Join(dir, "m.db"), "--agent-key-file", filepath.Join(dir, "agent.key"), "--assets-dir", "-")
	const mac, id = "52:54:00:77:00:01", "52-54-00-77-00-01"
	tokenLine := regexp.MustCompile(`(?m)^AGENT_TOKEN=(.*)$`)
	metadataToken := func() string {
		t.Helper()
		code, body := httpGet(t, s.URL+"/metadata?mac="+mac)
		m := tokenLine.FindStringSubmatch(body)
		if code != 200 || m == nil {
			t.Fatalf("/metadata: %d, no AGENT_TOKEN line:\n%s", code, body)
		}
		return m[1]
	}
	ipxeToken := func() string {
		t.Helper()
		code, body := httpGet(t, s.URL+"/ipxe?mac="+mac)
		m := regexp.MustCompile(`matchbox\.token=(\S*)`).FindStringSubmatch(body)
		if code != 200 || m == nil {
			t.Fatalf("/ipxe: %d, no matchbox.token argument:\n%s", code, body)
		}
		return m[1]
	}
	if tok := metadataToken(); !strings.HasPrefix(tok, "v1.") {
		t.Fatalf("a machine not known yet gets agent_token %q, want one", tok)
	}
	// The first request made the machine discovered (written in the background).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := httpGet(t, s.URL+"/api/v1/machines/"+id); code == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("machine %s was not discovered: %d", id, code)
		}
	}
	for _, tt := range []struct {
		state     string
		wantToken bool
	}{
		{"discovered", true},
		{"ready", false},
		{"provisioning", true},
		{"provisioned", false},
		{"failed", false},
	} {
		req, _ := http.NewRequest(http.MethodPut, s.URL+"/api/v1/machines/"+id+"/state", strings.NewReader(`{"state": "`+tt.state+`"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("set state %s: %d", tt.state, resp.StatusCode)
		}
		got := metadataToken()
		if tt.wantToken != strings.HasPrefix(got, "v1.") || (!tt.wantToken && got != "") {
			t.Errorf("%s machine: /metadata agent_token=%q, want a token: %v", tt.state, got, tt.wantToken)
		}
		if tt.state == "provisioned" {
			continue // /ipxe answers exit: boot from disk
		}
		if got := ipxeToken(); tt.wantToken != strings.HasPrefix(got, "v1.") || (!tt.wantToken && got != "") {
			t.Errorf("%s machine: /ipxe matchbox.token=%q, want a token: %v", tt.state, got, tt.wantToken)
		}
	}
}
