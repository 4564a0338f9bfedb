package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"matchbox/agent/token"
	"matchbox/internal/servetest"
	"matchbox/signing/signingtest"
)

// startProcess runs the built binary with exactly args and env (no
// serve, no --http-addr added) and waits until it listens. tlsOn selects
// the https:// scheme for s.URL.
func startProcess(t *testing.T, args, env []string, tlsOn bool) *server {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	p := servetest.Start(t, bin, args, env, servetest.HTTPListening)
	s := &server{Process: p, URL: "http://" + p.Addrs[0]}
	if tlsOn {
		s.URL = "https://" + p.Addrs[0]
	}
	return s
}

// runToExit runs the binary with args and env and returns its output and
// error; it must exit within a minute.
func runToExit(t *testing.T, args, env []string) (string, error) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// baseEnv is the environment a unit gets: no MATCHBOX_* of the caller's.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MATCHBOX_") {
			env = append(env, kv)
		}
	}
	return env
}

// v011DataDir writes a data directory in v0.11's layout and JSON: a
// profile with raw Ignition and a generic template, a group by MAC with
// metadata.
func v011DataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"profiles/node.json": `{"id": "node", "name": "node", "boot": {"kernel": "/assets/vmlinuz", "initrd": ["/assets/initrd.img"], "args": ["ignition.config.url=http://matchbox/ignition?mac=${mac:hexhyp}", "console=ttyS0"]}, "ignition_id": "node.ign", "generic_id": "node.txt"}`,
		"groups/node1.json":  `{"id": "node1", "name": "node1", "profile": "node", "selector": {"mac": "52:54:00:a1:9c:ae"}, "metadata": {"hostname": "node1.example.com"}}`,
		"ignition/node.ign":  "{\n  \"ignition\": {\"version\": \"3.3.0\"}\r\n}\n",
		"generic/node.txt":   "hostname={{.hostname}}\n",
		"assets/vmlinuz":     "kernel",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkBootEndpoints fetches the boot endpoints of v011DataDir's machine.
func checkBootEndpoints(t *testing.T, client *http.Client, base string) map[string][]byte {
	t.Helper()
	const q = "?mac=52-54-00-a1-9c-ae"
	want := map[string]string{
		"/boot.ipxe":      "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}",
		"/ipxe" + q:       "kernel /assets/vmlinuz ignition.config.url=",
		"/ignition" + q:   "\"3.3.0\"",
		"/generic" + q:    "hostname=node1.example.com\n",
		"/metadata" + q:   "HOSTNAME=node1.example.com",
		"/assets/vmlinuz": "kernel",
	}
	got := map[string][]byte{}
	for path, substr := range want {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), substr) {
			t.Errorf("GET %s: %d %q, want 200 with %q", path, resp.StatusCode, b, substr)
		}
		got[path] = b
	}
	return got
}

// unitFile is what a test needs of a systemd unit: its ExecStart and its
// Environment= assignments, in order.
type unitFile struct {
	execStart []string
	env       []string
}

var envAssignRE = regexp.MustCompile(`"([^"]*)"|(\S+)`)

// parseUnit reads ExecStart= and Environment= of unit files (a unit and
// its drop-ins, later ones adding to earlier ones as systemd does).
func parseUnit(t *testing.T, files ...string) unitFile {
	t.Helper()
	var u unitFile
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			key, value, ok := strings.Cut(line, "=")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			switch key {
			case "ExecStart":
				u.execStart = strings.Fields(value)
			case "Environment":
				for _, m := range envAssignRE.FindAllStringSubmatch(value, -1) {
					u.env = append(u.env, m[1]+m[2])
				}
			}
		}
	}
	return u
}

// v011Module returns the directory of the downloaded v0.11.0 module, or
// "" when the Go module proxy cannot be reached.
func v011Module(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/poseidon/matchbox@v0.11.0")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	var m struct{ Dir string }
	if json.Unmarshal(out, &m) != nil {
		return ""
	}
	return m.Dir
}

// TestV011UnitFile runs v0.11's own systemd unit (ExecStart and its
// Environment=, with each of the drop-ins its docs give) against this
// binary: only the binary's path, the listen ports (0) and the data
// directory (MATCHBOX_DATA_PATH, v0.11's own variable) are substituted.
func TestV011UnitFile(t *testing.T) {
	unit := filepath.Join("testdata", "v0.11", "matchbox.service")
	if mod := v011Module(t); mod != "" {
		shipped, err := os.ReadFile(filepath.Join(mod, "contrib", "systemd", "matchbox.service"))
		if err != nil {
			t.Fatal(err)
		}
		copied, _ := os.ReadFile(unit)
		if !bytes.Equal(shipped, copied) {
			t.Fatalf("testdata/v0.11/matchbox.service differs from v0.11.0's contrib/systemd/matchbox.service")
		}
	} else {
		t.Log("Go module proxy unreachable: using the committed copy of v0.11's unit unchecked")
	}
	ca := servetest.NewPKI(t, "test")
	for _, dropIn := range []string{"", "override-debug.conf", "override-rpc.conf"} {
		t.Run("unit+"+dropIn, func(t *testing.T) {
			files := []string{unit}
			if dropIn != "" {
				files = append(files, filepath.Join("testdata", "v0.11", dropIn))
			}
			u := parseUnit(t, files...)
			if len(u.execStart) != 1 || filepath.Base(u.execStart[0]) != "matchbox" {
				t.Fatalf("v0.11's ExecStart is %q: expected the bare binary", u.execStart)
			}
			data := v011DataDir(t)
			env := append(baseEnv(), "MATCHBOX_DATA_PATH="+data, "MATCHBOX_ASSETS_PATH="+filepath.Join(data, "assets"))
			rpc := false
			for _, kv := range u.env {
				k, v, _ := strings.Cut(kv, "=")
				if k == "MATCHBOX_ADDRESS" || k == "MATCHBOX_RPC_ADDRESS" {
					host, _, err := net.SplitHostPort(v)
					if err != nil {
						t.Fatalf("%s: %v", kv, err)
					}
					if host == "0.0.0.0" {
						host = "127.0.0.1"
					}
					v = net.JoinHostPort(host, "0")
					rpc = rpc || k == "MATCHBOX_RPC_ADDRESS"
				}
				env = append(env, k+"="+v)
			}
			if rpc {
				// v0.11's default paths are /etc/matchbox/{server.crt,
				// server.key,ca.crt}; its variables point elsewhere.
				env = append(env, "MATCHBOX_CERT_FILE="+ca.ServerCert, "MATCHBOX_KEY_FILE="+ca.ServerKey, "MATCHBOX_CA_FILE="+ca.CAFile)
			}
			// The binary's path is substituted; its arguments (none) kept.
			s := startProcess(t, u.execStart[1:], env, false)
			checkBootEndpoints(t, http.DefaultClient, s.URL)
			logs := s.Logs()
			for _, want := range []string{`"MATCHBOX_ADDRESS → --http-addr"`, `"MATCHBOX_DATA_PATH → --data-dir"`} {
				if strings.Count(logs, want) != 1 {
					t.Errorf("log does not name %s once:\n%s", want, logs)
				}
			}
			if dropIn == "override-debug.conf" && !strings.Contains(logs, "level=DEBUG") {
				t.Errorf("MATCHBOX_LOG_LEVEL=debug: no debug lines:\n%s", logs)
			}
			if rpc {
				m := regexp.MustCompile(`msg="matchbox API serving" addr=(\S+) tls=true`).FindStringSubmatch(logs)
				if m == nil {
					t.Fatalf("MATCHBOX_RPC_ADDRESS: no TLS API listener:\n%s", logs)
				}
				conn, err := tls.Dial("tcp", m[1], &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", Certificates: []tls.Certificate{ca.Client(t)}, NextProtos: []string{"h2"}})
				if err != nil {
					t.Fatalf("TLS to the API listener: %v", err)
				}
				if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
					t.Errorf("API listener negotiated %q, want h2 (gRPC)", p)
				}
				conn.Close()
			}
		})
	}
}

// TestSignedBootEndpoints serves with v0.11's -key-ring-path and
// MATCHBOX_PASSPHRASE and checks every signature with gpgv against the
// bytes the unsigned endpoint answers.
func TestSignedBootEndpoints(t *testing.T) {
	key := signingtest.Generate(t, "Key-Type: EDDSA\nKey-Curve: ed25519", "open sesame")
	data := v011DataDir(t)
	env := append(baseEnv(), "MATCHBOX_PASSPHRASE=open sesame")
	s := startProcess(t, []string{"-address", "127.0.0.1:0", "-data-path", data, "-key-ring-path", key.SecretRing}, env, false)
	bodies := checkBootEndpoints(t, http.DefaultClient, s.URL)
	for path := range bodies {
		if strings.HasPrefix(path, "/assets/") {
			continue
		}
		p, q, _ := strings.Cut(path, "?")
		for _, suffix := range []string{".sig", ".asc"} {
			body, sig := fetchSigned(t, s.URL, p, suffix, q)
			if out, err := key.Verify(t, body, sig); err != nil {
				t.Errorf("gpgv rejects %s%s: %v\n%s", p, suffix, err, out)
			}
		}
	}
	if code, _ := httpGet(t, s.URL+"/assets/vmlinuz.sig"); code != http.StatusNotFound {
		t.Errorf("/assets/vmlinuz.sig: %d, want 404 (v0.11 signs no assets)", code)
	}
	if code, _ := httpGet(t, s.URL+"/ipxe.sig?mac=00:00:00:00:00:01"); code != http.StatusNotFound {
		t.Errorf("/ipxe.sig for an unmatched machine: %d, want 404", code)
	}

	// A wrong passphrase stops the start with a clear error.
	out, err := runToExit(t, []string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--signing-keyring", key.SecretRing}, append(baseEnv(), "MATCHBOX_PASSPHRASE=wrong"))
	if err == nil || !strings.Contains(out, "wrong passphrase (MATCHBOX_PASSPHRASE)") || !strings.Contains(out, key.SecretRing) {
		t.Fatalf("wrong passphrase: %v\n%s", err, out)
	}
}

// fetchSigned fetches an endpoint's answer and then its signature. Answers
// that carry an agent token change when the token's issue time steps
// (token.Granularity): a pair fetched across such a step is fetched again.
func fetchSigned(t *testing.T, base, path, suffix, query string) (body, sig []byte) {
	t.Helper()
	for try := 0; ; try++ {
		step := time.Now().Truncate(token.Granularity)
		code, b := httpGet(t, base+path+"?"+query)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, b)
		}
		code, s := httpGet(t, base+path+suffix+"?"+query)
		if code != http.StatusOK {
			t.Fatalf("%s%s: %d %s", path, suffix, code, s)
		}
		if time.Now().Truncate(token.Granularity).Equal(step) || try == 2 {
			return []byte(b), []byte(s)
		}
	}
}

// TestHTTPSBootEndpoints serves the boot endpoints over TLS through v0.11's
// MATCHBOX_WEB_SSL, MATCHBOX_WEB_CERT_FILE and MATCHBOX_WEB_KEY_FILE.
func TestHTTPSBootEndpoints(t *testing.T) {
	pki := servetest.NewPKI(t, "test")
	data := v011DataDir(t)
	env := append(baseEnv(), "MATCHBOX_ADDRESS=127.0.0.1:0", "MATCHBOX_DATA_PATH="+data, "MATCHBOX_WEB_SSL=true",
		"MATCHBOX_WEB_CERT_FILE="+pki.ServerCert, "MATCHBOX_WEB_KEY_FILE="+pki.ServerKey)
	s := startProcess(t, nil, env, true)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}}
	checkBootEndpoints(t, client, s.URL)
	// Plain HTTP on the HTTPS listener is refused (Go answers 400).
	if code, body := httpGet(t, strings.Replace(s.URL, "https:", "http:", 1)+"/boot.ipxe"); code != http.StatusBadRequest {
		t.Errorf("plain HTTP on the HTTPS listener: %d %q, want 400", code, body)
	}
}

func TestV011SettingsRefused(t *testing.T) {
	data := t.TempDir()
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"alias and flag disagree", []string{"--http-addr", "127.0.0.1:0"}, []string{"MATCHBOX_ADDRESS=0.0.0.0:8080", "MATCHBOX_DATA_PATH=" + data},
			[]string{"MATCHBOX_ADDRESS", "--http-addr", "127.0.0.1:0", "0.0.0.0:8080"}},
		{"alias and variable disagree", nil, []string{"MATCHBOX_DATA_PATH=/a", "MATCHBOX_DATA_DIR=" + data},
			[]string{"MATCHBOX_DATA_PATH", "--data-dir", "MATCHBOX_DATA_DIR"}},
		{"web ssl without its files", nil, []string{"MATCHBOX_DATA_PATH=" + data, "MATCHBOX_ADDRESS=127.0.0.1:0", "MATCHBOX_WEB_SSL=true"},
			[]string{"/etc/matchbox/ssl/server.crt"}},
		{"bad log level", nil, []string{"MATCHBOX_DATA_PATH=" + data, "MATCHBOX_LOG_LEVEL=loud"},
			[]string{"--log-level", "loud"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runToExit(t, tc.args, append(baseEnv(), tc.env...))
			if err == nil {
				t.Fatalf("started:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("error does not name %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestVersionAndBareCommand(t *testing.T) {
	verRE := regexp.MustCompile(`^matchbox \S+ commit \S+( \(modified\))? go1\.\d+`)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, err := runToExit(t, args, baseEnv())
		if err != nil || !verRE.MatchString(out) {
			t.Errorf("matchbox %s: %v %q", strings.Join(args, " "), err, out)
		}
	}
	out, err := runToExit(t, []string{"--help"}, baseEnv())
	if err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("matchbox --help: %v\n%s", err, out)
	}
	// Subcommands still work beside bare serve.
	out, err = runToExit(t, []string{"serve", "--help"}, baseEnv())
	if err != nil || !strings.Contains(out, "--http-tls-cert-file") || strings.Contains(out, "--rpc-address") {
		t.Errorf("matchbox serve --help: %v\n%s", err, out)
	}
}
