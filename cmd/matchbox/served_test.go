package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGetMachinesShowsServedGroup: a new MAC served /ipxe is listed by
// `get machines` with the group it was served (and its profile in
// `machine show` and -o json); render of another group for it changes
// nothing; a later boot request the other group answers changes both.
func TestGetMachinesShowsServedGroup(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeFiles(t, data, map[string]string{
		"profiles/install.yaml": "id: install\nboot:\n  kernel: /assets/vmlinuz\n",
		"profiles/rescue.yaml":  "id: rescue\nboot:\n  kernel: /assets/rescue\n",
		"groups/workers.yaml":   "id: workers\nprofile: install\nselector:\n  os: worker\n",
		"groups/rescue.yaml":    "id: rescue\nprofile: rescue\nselector:\n  os: rescue\n",
	})
	s := startServer(t, "--data-dir", data, "--db", filepath.Join(dir, "matchbox.db"), "--assets-dir", "-")
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}
	const mac, id = "52:54:00:5e:00:01", "52-54-00-5e-00-01"

	// served polls `get machines -o json` until the machine shows want
	// (group, profile), or fails.
	served := func(want [2]string) {
		t.Helper()
		var got [2]string
		for deadline := time.Now().Add(5 * time.Second); ; {
			code, out, errOut := runCLI(t, env, "get", "machines", "-o", "json")
			if code != 0 {
				t.Fatalf("get machines: %d %s", code, errOut)
			}
			var list []struct {
				ID            string `json:"id"`
				ServedGroup   string `json:"served_group"`
				ServedProfile string `json:"served_profile"`
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("get machines -o json: %v\n%s", err, out)
			}
			for _, m := range list {
				if m.ID == id {
					got = [2]string{m.ServedGroup, m.ServedProfile}
				}
			}
			if got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got != want {
			t.Fatalf("machine %s served %v, want %v", id, got, want)
		}
	}

	if code, body := httpGet(t, s.URL+"/ipxe?mac="+mac+"&os=worker"); code != 200 {
		t.Fatalf("/ipxe: %d %s", code, body)
	}
	served([2]string{"workers", "install"})
	code, out, errOut := runCLI(t, env, "get", "machines")
	if code != 0 {
		t.Fatalf("get machines: %d %s", code, errOut)
	}
	var row []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			row = f
		}
	}
	if len(row) < 4 || row[3] != "workers" {
		t.Fatalf("get machines: the row of %s is %q, want group workers:\n%s", id, row, out)
	}
	if code, out, _ := runCLI(t, env, "machine", "show", mac); code != 0 || !strings.Contains(out, "group workers, profile install") {
		t.Fatalf("machine show: %d\n%s", code, out)
	}

	// A look changes nothing.
	if code, _, errOut := runCLI(t, env, "render", "--mac", mac, "--label", "os=rescue"); code != 0 || !strings.Contains(errOut, "group rescue") {
		t.Fatalf("render: %d %s", code, errOut)
	}
	time.Sleep(1500 * time.Millisecond) // a recorder batch would be written
	served([2]string{"workers", "install"})

	// A 404 (no group matches) is served nothing and changes nothing.
	if code, _ := httpGet(t, s.URL+"/ipxe?mac="+mac+"&os=none"); code != 404 {
		t.Fatalf("/ipxe?os=none: %d", code)
	}
	time.Sleep(1500 * time.Millisecond)
	served([2]string{"workers", "install"})

	if code, body := httpGet(t, s.URL+"/ipxe?mac="+mac+"&os=rescue"); code != 200 {
		t.Fatalf("/ipxe?os=rescue: %d %s", code, body)
	}
	served([2]string{"rescue", "rescue"})
}
