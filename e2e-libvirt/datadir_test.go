package e2elibvirt

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
)

// node is a machine a scenario declares in matchbox's data directory.
type node struct {
	// Name is the VM's name and the host name its config sets.
	Name string
	// MAC is the NIC's address.
	MAC string
}

// bootArgs are the kernel arguments of the test OS, as iPXE expands them
// (${mac:hexhyp} is iPXE's). base is the HTTP base URL the VM reaches.
func bootArgs(base string) []string {
	return []string{
		"initrd=initramfs.cpio.gz",
		"console=ttyS0,115200n8",
		"panic=-1",
		"quiet",
		"matchbox.config=" + base + "/ignition?mac=${mac:hexhyp}",
		"matchbox.done=" + base + "/generic?mac=${mac:hexhyp}&step=done",
	}
}

// ignitionTemplate is the first-boot config of a node, a Butane template
// matchbox renders from the group's metadata and translates to Ignition:
// the host name and a file naming the node's role.
const ignitionTemplate = `variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      overwrite: true
      contents:
        inline: "{{.hostname}}"
    - path: /etc/matchbox-role
      mode: 0644
      overwrite: true
      contents:
        inline: "{{.role}}"
`

// genericDone is what the test OS fetches when it is done.
const genericDone = "done {{.mac}}\n"

// writeDataDir writes matchbox's data directory for nodes: one profile
// booting the test OS, and one group per node selecting its MAC, whose
// metadata gives the host name and role. base is matchbox's HTTP base URL.
func writeDataDir(t testing.TB, dir, base, role string, nodes []node) {
	t.Helper()
	profile := map[string]any{
		"id":          "testos",
		"name":        "matchbox end-to-end test OS",
		"ignition_id": "testos.yaml",
		"generic_id":  "done.txt",
		"boot": map[string]any{
			"kernel": "/assets/testos/vmlinuz",
			"initrd": []string{"/assets/testos/initramfs.cpio.gz"},
			"args":   bootArgs(base),
		},
	}
	writeJSON(t, filepath.Join(dir, "profiles", "testos.json"), profile)
	for _, n := range nodes {
		group := map[string]any{
			"id":       n.Name,
			"name":     "end-to-end node " + n.Name,
			"profile":  "testos",
			"selector": map[string]string{"mac": n.MAC},
			"metadata": map[string]any{"hostname": n.Name, "role": role},
		}
		writeJSON(t, filepath.Join(dir, "groups", n.Name+".json"), group)
	}
	mustWrite(t, filepath.Join(dir, "ignition", "testos.yaml"), ignitionTemplate)
	mustWrite(t, filepath.Join(dir, "generic", "done.txt"), genericDone)
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("encode %s: %v", path, err)
	}
	mustWrite(t, path, string(b)+"\n")
}

// macFor returns a stable locally administered MAC for VM number i of a
// scenario number s.
func macFor(s, i int) string {
	return fmt.Sprintf("52:54:00:e2:%02x:%02x", s, i)
}
