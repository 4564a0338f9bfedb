package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"matchbox/agent/token"
	"matchbox/bmc/ipmisim"
	"matchbox/hardware"
)

func postJSON(t *testing.T, url, bearer string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

// TestCLIMachineBMC runs the real binary against `matchbox serve` and an
// ipmi_sim: declare the BMC, read and change power, show the machine, list
// machines wide, provision; the password shows nowhere.
func TestCLIMachineBMC(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Options{Username: "cliadmin", Password: "Cli-Passw0rd-e81b"})
	dir := t.TempDir()
	secretKey := filepath.Join(dir, "secret.key")
	agentKey := bytes.Repeat([]byte{5}, 32)
	agentKeyFile := filepath.Join(dir, "agent.key")
	passwordFile := filepath.Join(dir, "bmc.pass")
	writeFiles(t, dir, map[string]string{
		"secret.key": hex.EncodeToString(bytes.Repeat([]byte{9}, 32)) + "\n",
		"agent.key":  string(agentKey),
		"bmc.pass":   sim.Password + "\n",
	})
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	s := startServer(t, "--data-dir", filepath.Join(dir, "data"), "--assets-dir", "-", "--secret-key-file", secretKey,
		"--agent-key-file", agentKeyFile, "--bmc-retries", "0", "--log-level", "debug")
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}

	if code, body := postJSON(t, s.URL+"/api/v1/machines", "", map[string]any{"id": "node1", "labels": map[string]string{"rack": "r12"}}); code != 201 {
		t.Fatalf("create machine: %d %s", code, body)
	}
	inv := hardware.Inventory{System: hardware.System{Vendor: "Supermicro", Product: "SYS-1029P"}}
	inv.CPU.Cores, inv.CPU.Threads = 24, 48
	inv.Memory.Bytes = 192 << 30
	inv.Disks = []hardware.Disk{{Name: "nvme0n1", SizeBytes: 2 << 40}, {Name: "nvme1n1", SizeBytes: 2 << 40}}
	inv.NICs = []hardware.NIC{{Name: "eno1", MAC: "52:54:00:00:30:01"}}
	if code, body := postJSON(t, s.URL+"/api/v1/machines/node1/inventory", token.Issue(agentKey, "node1"), inv); code != 200 {
		t.Fatalf("agent inventory: %d %s", code, body)
	}

	// The agent's POST and the API's GET share the path: GET reaches the API.
	if code, body := httpGet(t, s.URL+"/api/v1/machines/node1/inventory"); code != 200 || !strings.Contains(body, `"vendor": "Supermicro"`) || !strings.Contains(body, `"history"`) {
		t.Fatalf("GET inventory: %d %s", code, body)
	}

	port := strconv.Itoa(sim.Port)
	steps := []struct {
		name    string
		env     []string
		args    []string
		code    int
		want    []string
		notWant []string
		stderr  string
	}{
		{
			name: "a user without a password is refused",
			args: []string{"machine", "bmc", "set", "node1", "--address", sim.Host, "--username", sim.Username}, code: 1,
			stderr: "needs a password",
		},
		{
			name: "bmc set with a password file",
			args: []string{"machine", "bmc", "set", "node1", "--address", sim.Host, "--port", port, "--driver", "ipmi", "--cipher-suite", "3",
				"--username", sim.Username, "--password-file", passwordFile},
			want: []string{"machine node1: BMC ipmi://127.0.0.1:" + port + " set (credentials sealed)\n"},
		},
		{
			name: "power status",
			args: []string{"machine", "power", "node1", "status"}, want: []string{"off\n"},
		},
		{
			name: "bmc set with the password from the environment",
			env:  []string{bmcPasswordEnv + "=" + sim.Password},
			args: []string{"machine", "bmc", "set", "node1", "--address", sim.Host, "--port", port, "--driver", "ipmi", "--cipher-suite", "3", "--username", sim.Username},
			want: []string{"(credentials sealed)"},
		},
		{
			name: "power on",
			args: []string{"machine", "power", "node1", "on"}, want: []string{"machine node1: power on done: power on, via ipmi"},
		},
		{
			name: "power status after on",
			args: []string{"machine", "power", "node1", "status"}, want: []string{"on\n"},
		},
		{
			name: "bad action",
			args: []string{"machine", "power", "node1", "explode"}, code: 1, stderr: "field action",
		},
		{
			name: "machine show",
			args: []string{"machine", "show", "node1"},
			want: []string{"ID:", "node1", "State:", "Labels:", "rack=r12", "BMC:", "ipmi://127.0.0.1:" + port + " (cipher suite 3, credentials set)",
				"Hardware:", "Supermicro SYS-1029P", "24 cores, 48 threads", "Memory:", "192GiB", "Disks:", "2 (4TiB)",
				"Last events:", "bmc.power_status", "bmc.power ", "agent.inventory"},
			notWant: []string{sim.Username},
		},
		{
			name: "get machines wide",
			args: []string{"get", "machines", "-o", "wide"},
			want: []string{"ID", "STATE", "GROUP", "CORES", "MEMORY", "DISKS", "VENDOR", "node1", "24", "192GiB", "2 (4TiB)", "Supermicro SYS-1029P"},
		},
		{
			name: "provision: one ok, one unknown",
			args: []string{"machine", "provision", "node1", "ghost"}, code: 1,
			want:   []string{"node1: ok: provisioning (power on", "ghost: failed: ", "(not_found)"},
			stderr: "1 of 2 machines failed",
		},
		{
			name: "provision by selector",
			args: []string{"machine", "provision", "--selector", "rack=r12"},
			want: []string{"node1: ok: provisioning"}, notWant: []string{"failed"},
		},
		{
			name: "selector matching nothing",
			args: []string{"machine", "provision", "--selector", "rack=r99"}, code: 1, stderr: "no machine has the labels rack=r99",
		},
	}
	for _, st := range steps {
		code, stdout, stderr := runCLI(t, append(append([]string{}, env...), st.env...), st.args...)
		t.Logf("matchbox %s → exit %d\n%s%s", strings.Join(st.args, " "), code, stdout, stderr)
		if code != st.code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", st.name, code, st.code, stdout, stderr)
		}
		for _, w := range st.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", st.name, w, stdout)
			}
		}
		for _, w := range st.notWant {
			if strings.Contains(stdout, w) {
				t.Errorf("%s: stdout has %q:\n%s", st.name, w, stdout)
			}
		}
		if st.stderr != "" && !strings.Contains(stderr, st.stderr) {
			t.Errorf("%s: stderr lacks %q:\n%s", st.name, st.stderr, stderr)
		}
		if strings.Contains(stdout+stderr, sim.Password) {
			t.Errorf("%s: the password was printed", st.name)
		}
	}
	if !sim.Power(t) || sim.Boot(t) != "pxe" {
		t.Errorf("simulator after provisioning: power %v, boot %q", sim.Power(t), sim.Boot(t))
	}
	if logs := s.Logs(); !strings.Contains(logs, "machine BMC set") || strings.Contains(logs, sim.Password) {
		t.Errorf("server logs lack the BMC record or carry the password:\n%s", logs)
	}
}
