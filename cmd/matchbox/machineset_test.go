package main

import (
	"bytes"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIMachineSetAndMACs runs the real binary against `matchbox serve`:
// a machine's first boot request leaves a machine that the CLI finds at
// once by its MAC in colon form (events, bmc set); `machine set` changes
// labels, state and IP through the API and refuses bad values; --create
// declares a machine.
func TestCLIMachineSetAndMACs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"secret.key":           hex.EncodeToString(bytes.Repeat([]byte{9}, 32)) + "\n",
		"data/profiles/p.yaml": "boot:\n  kernel: /k\n",
		"data/groups/all.yaml": "profile: p\n",
	})
	s := startServer(t, "--data-dir", filepath.Join(dir, "data"), "--assets-dir", "-",
		"--secret-key-file", filepath.Join(dir, "secret.key"), "--agent-key-file", filepath.Join(dir, "agent.key"))
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}

	// A machine's first boot request: by the time its answer is complete,
	// the machine exists (the API finds it by its MAC).
	for i := range 5 {
		mac := "52:54:00:aa:00:0" + string(rune('0'+i))
		if code, body := httpGet(t, s.URL+"/ipxe?mac="+mac); code != 200 {
			t.Fatalf("/ipxe: %d %s", code, body)
		}
		if code, body := httpGet(t, s.URL+"/api/v1/machines/"+mac); code != 200 {
			t.Fatalf("machine %s right after its first request: %d %s", mac, code, body)
		}
	}
	// First contact, then at once the CLI by colon MAC.
	if code, body := httpGet(t, s.URL+"/ipxe?mac=52:54:00:12:34:56"); code != 200 {
		t.Fatalf("/ipxe: %d %s", code, body)
	}
	steps := []struct {
		args   []string
		code   int
		out    string // in stdout (code 0) or stderr
		cliEnv []string
	}{
		{args: []string{"machine", "bmc", "set", "52:54:00:12:34:56", "--address", "10.0.10.11", "--driver", "ipmi"}, out: "10.0.10.11"},
		{args: []string{"machine", "events", "52:54:00:12:34:56"}, out: "http.ipxe"},
		{args: []string{"machine", "events", "5254.0012.3456"}, out: "bmc.configured"},
		{args: []string{"machine", "events", "52:54:00:12:34:57"}, code: 1, out: "not found"},
		{args: []string{"machine", "set", "52:54:00:12:34:56", "--label", "rack=r12", "--label", "row=3", "--state", "ready", "--ip", "10.0.0.21"},
			out: "machine 52-54-00-12-34-56: version 3, state ready, labels rack=r12,row=3, ip 10.0.0.21"},
		{args: []string{"machine", "set", "52-54-00-12-34-56", "--label", "row-", "--ip", "-"},
			out: "labels rack=r12, ip -"},
		{args: []string{"machine", "set", "52-54-00-12-34-56", "--state", "done"}, code: 1, out: `--state "done"`},
		{args: []string{"machine", "set", "52-54-00-12-34-56", "--label", "=x"}, code: 1, out: `--label "=x"`},
		{args: []string{"machine", "set", "node9", "--label", "a=b"}, code: 1, out: "--create declares it"},
		{args: []string{"machine", "set", "node9", "--create", "--mac", "52:54:00:00:00:09", "--label", "a=b"}, out: "machine node9: version 1, state discovered, labels a=b"},
		{args: []string{"machine", "show", "52:54:00:00:00:09"}, out: "node9"},
		{args: []string{"get", "machines", "-o", "wide"}, out: "rack=r12"},
	}
	for _, st := range steps {
		code, stdout, stderr := runCLI(t, append(append([]string{}, env...), st.cliEnv...), st.args...)
		got := stdout
		if st.code != 0 {
			got = stderr
		}
		if code != st.code || !strings.Contains(got, st.out) {
			t.Errorf("matchbox %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(st.args, " "), code, st.code, st.out, stdout, stderr)
		}
	}
}
