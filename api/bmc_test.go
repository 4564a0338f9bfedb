package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"matchbox/api/wire"
	"matchbox/bmc"
	"matchbox/bmc/ipmisim"
	"matchbox/bmc/redfishtest"
	"matchbox/bmc/secret"
	"matchbox/hardware"
	"matchbox/lifecycle"
	"matchbox/store"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bmcServer is the API with a lifecycle service driving real BMC peers,
// over a real store, through real HTTP; every log goes to logs at debug
// level.
type bmcServer struct {
	*testServer
	path string
	logs *syncBuffer
	// responses collects every answer body, to check for credentials.
	responses []string
}

type bmcServerOptions struct {
	noSecretKey bool
	parallel    int
}

func newBMCServer(t *testing.T, opts bmcServerOptions) *bmcServer {
	t.Helper()
	ctx := context.Background()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	path := filepath.Join(t.TempDir(), "matchbox.db")
	st, err := store.Open(ctx, store.Config{Path: path, Synchronous: "NORMAL", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var key *secret.Key
	if !opts.noSecretKey {
		raw := make([]byte, secret.KeySize)
		_, err := rand.Read(raw)
		if err != nil {
			t.Fatal(err)
		}
		if key, err = secret.NewKey(raw); err != nil {
			t.Fatal(err)
		}
	}
	ctl := bmc.New(bmc.Config{Timeout: 15 * time.Second, Retries: 0, Logger: log})
	lc, err := lifecycle.New(lifecycle.Config{Store: st, BMC: ctl, Secrets: key, Logger: log, Parallel: opts.parallel})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Store: st, Logger: log, Lifecycle: lc})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &bmcServer{testServer: &testServer{Server: srv, store: st, router: r}, path: path, logs: logs}
}

// do sends a request, checks its status and, when given, its error code,
// and keeps the answer.
func (s *bmcServer) do(t *testing.T, want int, wantCode, method, path, body string) response {
	t.Helper()
	r := s.call(t, method, path, body)
	s.responses = append(s.responses, r.body)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if wantCode != "" && r.errorCode() != wantCode {
		t.Fatalf("%s %s: code %q, want %q: %s", method, path, r.errorCode(), wantCode, r.body)
	}
	return r
}

// assertNoSecret checks that secret is in no answer, no log line and (when
// closed is true, after the store was closed) not in the database files.
func (s *bmcServer) assertNoSecret(t *testing.T, secret string, closed bool) {
	t.Helper()
	for _, body := range s.responses {
		if strings.Contains(body, secret) {
			t.Errorf("an answer carries the credential: %s", body)
		}
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "machine BMC set") {
		t.Fatalf("the logs were not captured:\n%s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Errorf("the logs carry the credential:\n%s", logs)
	}
	if !closed {
		return
	}
	read := 0
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(s.path + suffix)
		if err != nil {
			continue
		}
		read++
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the credential is in clear in %s", s.path+suffix)
		}
	}
	if read == 0 {
		t.Fatalf("no database file at %s", s.path)
	}
}

// eventTypes lists the types of a machine's timeline, in order.
func (s *bmcServer) eventTypes(t *testing.T, id string) []string {
	t.Helper()
	var el wire.EventList
	s.do(t, http.StatusOK, "", "GET", "/api/v1/machines/"+id+"/events?limit=1000", "").decode(t, &el)
	var types []string
	for _, e := range el.Events {
		types = append(types, e.Type)
	}
	return types
}

func bmcBody(t *testing.T, v wire.BMC) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitSimEvents waits until the simulator's chassis_control calls end with
// want: ipmi_sim powers a cycled chassis back on a moment after powering it
// off.
func waitSimEvents(t *testing.T, sim *ipmisim.Sim, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := sim.Events(t)
		if strings.HasSuffix(strings.Join(got, ","), strings.Join(want, ",")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("chassis_control calls %q, want them to end with %q", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const simPassword = "Sim-Passw0rd-9f3a"

// TestBMCActionsAgainstIPMISim drives OpenIPMI's ipmi_sim through the API:
// every action must change the simulator's chassis state and show on the
// machine's timeline, and the credentials must never come back.
func TestBMCActionsAgainstIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Options{Username: "operator7", Password: simPassword})
	s := newBMCServer(t, bmcServerOptions{})
	s.do(t, 201, "", "POST", "/api/v1/machines", `{"id": "node1", "macs": ["52:54:00:00:10:01"], "labels": {"rack": "r1"}}`)

	// Declare the BMC: the answer shows it without credentials.
	var view wire.BMC
	s.do(t, 200, "", "PUT", "/api/v1/machines/node1/bmc", bmcBody(t, wire.BMC{
		Address: sim.Host, Port: sim.Port, Driver: "ipmi", CipherSuite: sim.CipherSuite, Username: sim.Username, Password: sim.Password,
	})).decode(t, &view)
	if !view.Credentials() || view.Address != sim.Host || view.Port != sim.Port || view.Driver != "ipmi" || view.CipherSuite != "3" {
		t.Fatalf("PUT bmc answered %+v", view)
	}
	r := s.do(t, 200, "", "GET", "/api/v1/machines/node1/bmc", "")
	if !strings.Contains(r.body, `"has_credentials": true`) || strings.Contains(r.body, "operator7") {
		t.Fatalf("GET bmc: %s", r.body)
	}

	status := func(want string) {
		t.Helper()
		var ps wire.PowerStatus
		s.do(t, 200, "", "POST", "/api/v1/machines/node1/power", `{"action": "status"}`).decode(t, &ps)
		if ps.Power != want {
			t.Fatalf("power status %q, want %q", ps.Power, want)
		}
	}
	power := func(action string) wire.BMCResult {
		t.Helper()
		var res wire.BMCResult
		s.do(t, 200, "", "POST", "/api/v1/machines/node1/power", `{"action": "`+action+`"}`).decode(t, &res)
		if res.Driver != "ipmi" || res.Requested != action || res.Attempts < 1 {
			t.Fatalf("power %s answered %+v", action, res)
		}
		return res
	}

	status("off")
	if res := power("on"); !sim.Power(t) || res.PowerState != "on" {
		t.Fatalf("power on: simulator on=%v, result %+v", sim.Power(t), res)
	}
	waitSimEvents(t, sim, "power 1")
	status("on")
	if power("off"); sim.Power(t) {
		t.Fatal("power off: the simulator is still on")
	}
	waitSimEvents(t, sim, "power 1", "power 0")
	power("on")
	sim.ResetEvents(t)
	power("cycle")
	waitSimEvents(t, sim, "power 0", "power 1")
	if !sim.Power(t) {
		t.Fatal("power cycle left the simulator off")
	}

	// One-time PXE boot.
	var res wire.BMCResult
	s.do(t, 200, "", "POST", "/api/v1/machines/node1/bootdevice", `{"device": "pxe"}`).decode(t, &res)
	if got := sim.Boot(t); got != "pxe" || res.Driver != "ipmi" {
		t.Fatalf("bootdevice pxe: simulator boot %q, result %+v", got, res)
	}
	s.do(t, 200, "", "POST", "/api/v1/machines/node1/bootdevice", `{"device": "disk", "persistent": true}`)
	if got := sim.Boot(t); got != "default" { // ipmi_sim names the disk selector "default"
		t.Fatalf("bootdevice disk: simulator boot %q", got)
	}

	// Provision: PXE once, cycle; the machine is provisioning.
	sim.ResetEvents(t)
	s.do(t, 200, "", "POST", "/api/v1/machines/node1/provision", "").decode(t, &res)
	if sim.Boot(t) != "pxe" || res.PowerState != "on" {
		t.Fatalf("provision: simulator boot %q, result %+v", sim.Boot(t), res)
	}
	waitSimEvents(t, sim, "boot pxe", "power 0", "power 1")
	var m wire.Machine
	s.do(t, 200, "", "GET", "/api/v1/machines/node1", "").decode(t, &m)
	if m.State != "provisioning" {
		t.Fatalf("state after provision: %s", m.State)
	}

	// The timeline shows each action.
	typeList := s.eventTypes(t, "node1")
	types := strings.Join(typeList, " ")
	for _, want := range []string{"bmc.power_status", "bmc.power", "bmc.boot_device", "machine.provisioning", "bmc.provision_boot"} {
		if !strings.Contains(types, want) {
			t.Errorf("timeline lacks %s: %s", want, types)
		}
	}
	n := 0
	for _, typ := range typeList {
		if typ == "bmc.power" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("timeline has %d bmc.power events, want 4 (on, off, on, cycle): %s", n, types)
	}

	// Wrong credentials: 502 bmc_auth, and the wrong password is not echoed.
	s.do(t, 200, "", "PUT", "/api/v1/machines/node1/bmc", bmcBody(t, wire.BMC{
		Address: sim.Host, Port: sim.Port, Driver: "ipmi", CipherSuite: sim.CipherSuite, Username: sim.Username, Password: "Wrong-Passw0rd-77",
	}))
	s.do(t, 502, CodeBMCAuth, "POST", "/api/v1/machines/node1/power", `{"action": "status"}`)
	s.assertNoSecret(t, "Wrong-Passw0rd-77", false)

	s.assertNoSecret(t, simPassword, false)
	s.store.Close()
	s.assertNoSecret(t, simPassword, true)
}

// TestBMCRedfish drives the Redfish double through the API, including a BMC
// that acknowledges a boot override without applying it.
func TestBMCRedfish(t *testing.T) {
	const password = "Rf-Passw0rd-4c1d"
	good := redfishtest.New(redfishtest.Options{Password: password})
	defer good.Close()
	ignoring := redfishtest.New(redfishtest.Options{Password: password, PoweredOn: true, IgnoreBootPatch: true})
	defer ignoring.Close()
	s := newBMCServer(t, bmcServerOptions{})
	for _, c := range []struct {
		id  string
		srv *redfishtest.Server
	}{{"rf-good", good}, {"rf-ignoring", ignoring}} {
		host, port := c.srv.HostPort()
		s.do(t, 201, "", "POST", "/api/v1/machines", `{"id": "`+c.id+`"}`)
		s.do(t, 200, "", "PUT", "/api/v1/machines/"+c.id+"/bmc", bmcBody(t, wire.BMC{
			Address: host, Port: port, Driver: "redfish", Insecure: true, Username: "admin", Password: password,
		}))
	}

	var res wire.BMCResult
	s.do(t, 200, "", "POST", "/api/v1/machines/rf-good/bootdevice", `{"device": "pxe", "efi": true}`).decode(t, &res)
	target, enabled, mode := good.Boot()
	if target != "Pxe" || enabled != "Once" || mode != "UEFI" || !res.BootVerified || res.Driver != "redfish" {
		t.Fatalf("redfish bootdevice: %s/%s/%s, result %+v", target, enabled, mode, res)
	}
	s.do(t, 200, "", "POST", "/api/v1/machines/rf-good/power", `{"action": "on"}`).decode(t, &res)
	if good.Power() != "On" || res.PowerState != "on" {
		t.Fatalf("redfish power on: %s, result %+v", good.Power(), res)
	}

	// Acknowledged, not applied: 502 bmc_boot_not_applied, on the timeline.
	r := s.do(t, 502, CodeBMCBootNotApplied, "POST", "/api/v1/machines/rf-ignoring/bootdevice", `{"device": "pxe"}`)
	if target, _, _ := ignoring.Boot(); target != "None" {
		t.Fatalf("the ignoring double holds %q", target)
	}
	if !strings.Contains(r.body, "did not apply") {
		t.Errorf("error does not say what failed: %s", r.body)
	}
	// Provisioning through it fails the same way and leaves the machine failed.
	s.do(t, 502, CodeBMCBootNotApplied, "POST", "/api/v1/machines/rf-ignoring/provision", "")
	var m wire.Machine
	s.do(t, 200, "", "GET", "/api/v1/machines/rf-ignoring", "").decode(t, &m)
	if m.State != "failed" {
		t.Fatalf("state after failed provision: %s", m.State)
	}
	var el wire.EventList
	s.must(t, 200, "GET", "/api/v1/machines/rf-ignoring/events?type=bmc.boot_device", "").decode(t, &el)
	if len(el.Events) != 1 || !strings.Contains(fmt.Sprint(el.Events[0].Detail["error"]), "did not apply") {
		t.Fatalf("timeline: %+v", el.Events)
	}
	if len(ignoring.Resets()) != 0 {
		t.Errorf("the machine was reset although its boot override failed: %v", ignoring.Resets())
	}

	// Unreachable: a closed port answers 504 bmc_unreachable.
	s.do(t, 201, "", "POST", "/api/v1/machines", `{"id": "rf-gone"}`)
	s.do(t, 200, "", "PUT", "/api/v1/machines/rf-gone/bmc", bmcBody(t, wire.BMC{Address: "127.0.0.1", Port: closedPort(t), Driver: "redfish", Insecure: true, Username: "admin", Password: password}))
	s.do(t, 504, CodeBMCUnreachable, "POST", "/api/v1/machines/rf-gone/power", `{"action": "off"}`)

	s.assertNoSecret(t, password, false)
	s.store.Close()
	s.assertNoSecret(t, password, true)
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestBMCRefusals(t *testing.T) {
	s := newBMCServer(t, bmcServerOptions{noSecretKey: true})
	s.do(t, 201, "", "POST", "/api/v1/machines", `{"id": "m1"}`)
	const password = "NoKey-Passw0rd-1234"
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field              string
		contentType              string
	}{
		{"credentials without a key", "PUT", "/api/v1/machines/m1/bmc", `{"address": "10.0.0.5", "username": "admin", "password": "` + password + `"}`, 422, CodeNoSecretKey, "password", ""},
		{"credentials without a key, YAML", "PUT", "/api/v1/machines/m1/bmc", "address: 10.0.0.5\nusername: admin\npassword: " + password + "\n", 422, CodeNoSecretKey, "password", "application/yaml"},
		{"no address", "PUT", "/api/v1/machines/m1/bmc", `{"driver": "ipmi"}`, 400, CodeInvalidBody, "address", ""},
		{"unknown driver", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "driver": "amt"}`, 400, CodeInvalidBody, "driver", ""},
		{"bad port", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "port": 70000}`, 400, CodeInvalidBody, "port", ""},
		{"bad cipher suite", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "cipher_suite": "x"}`, 400, CodeInvalidBody, "cipher_suite", ""},
		{"password without user", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "password": "` + password + `"}`, 400, CodeInvalidBody, "username", ""},
		{"unknown field", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "passwd": "` + password + `"}`, 400, CodeInvalidBody, "passwd", ""},
		{"read-only field", "PUT", "/api/v1/machines/m1/bmc", `{"address": "h", "has_credentials": true}`, 400, CodeInvalidBody, "has_credentials", ""},
		{"blank address", "PUT", "/api/v1/machines/m1/bmc", `{"address": " "}`, 400, CodeInvalidBody, "address", ""},
		{"unknown machine", "PUT", "/api/v1/machines/nope/bmc", `{"address": "h"}`, 404, CodeNotFound, "", ""},
		{"no BMC: get", "GET", "/api/v1/machines/m1/bmc", "", 404, CodeNotFound, "", ""},
		{"no BMC: power", "POST", "/api/v1/machines/m1/power", `{"action": "status"}`, 409, CodeNoBMC, "", ""},
		{"no BMC: bootdevice", "POST", "/api/v1/machines/m1/bootdevice", `{"device": "pxe"}`, 409, CodeNoBMC, "", ""},
		{"no BMC: provision", "POST", "/api/v1/machines/m1/provision", "", 409, CodeNoBMC, "", ""},
		{"invalid action", "POST", "/api/v1/machines/m1/power", `{"action": "explode"}`, 400, CodeInvalidBody, "action", ""},
		{"invalid device", "POST", "/api/v1/machines/m1/bootdevice", `{"device": "floppy"}`, 400, CodeInvalidBody, "device", ""},
		{"unknown machine: power", "POST", "/api/v1/machines/nope/power", `{"action": "on"}`, 404, CodeNotFound, "", ""},
		{"unknown machine: inventory", "GET", "/api/v1/machines/nope/inventory", "", 404, CodeNotFound, "", ""},
		{"bulk without targets", "POST", "/api/v1/machines/provision", `{}`, 400, CodeInvalidBody, "selector", ""},
		{"bulk with both", "POST", "/api/v1/machines/provision", `{"selector": {"rack": "r1"}, "ids": ["m1"]}`, 400, CodeInvalidBody, "ids", ""},
		{"bulk with a bad id", "POST", "/api/v1/machines/provision", `{"ids": ["m1", "../x"]}`, 400, CodeInvalidBody, "ids[1]", ""},
		{"power by GET", "GET", "/api/v1/machines/m1/power", "", 405, CodeMethodNotAllowed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var headers []string
			if tt.contentType != "" {
				headers = append(headers, "Content-Type: "+tt.contentType)
			}
			r := s.call(t, tt.method, tt.path, tt.body, headers...)
			s.responses = append(s.responses, r.body)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("status %d code %q, want %d %q: %s", r.status, r.errorCode(), tt.status, tt.code, r.body)
			}
			var e wire.Error
			r.decode(t, &e)
			if e.Error.Field != tt.field {
				t.Errorf("field %q, want %q (%s)", e.Error.Field, tt.field, e.Error.Message)
			}
		})
	}
	// The no_bmc answer tells CLI users the command, API users the call.
	if r := s.call(t, "POST", "/api/v1/machines/m1/power", `{"action": "status"}`); !strings.Contains(r.body, "matchbox machine bmc set ID --address ADDR") || !strings.Contains(r.body, "PUT /api/v1/machines/ID/bmc") {
		t.Errorf("no_bmc hint: %s", r.body)
	}
	// A YAML body whose password lands in a field of another type is not
	// echoed in the error, not even the start YAML quotes.
	r := s.call(t, "PUT", "/api/v1/machines/m1/bmc", "address: h\nport: "+password+"\n", "Content-Type: application/yaml")
	s.responses = append(s.responses, r.body)
	if r.status != 400 || !strings.Contains(r.body, "cannot unmarshal") || strings.Contains(r.body, password[:5]) {
		t.Fatalf("YAML type error: %d %s", r.status, r.body)
	}
	// Without credentials a BMC is stored.
	var view wire.BMC
	s.do(t, 200, "", "PUT", "/api/v1/machines/m1/bmc", `{"address": "10.0.0.5", "driver": "redfish"}`).decode(t, &view)
	if view.HasCredentials == nil || *view.HasCredentials || view.Address != "10.0.0.5" {
		t.Fatalf("BMC without credentials: %+v", view)
	}
	s.do(t, 204, "", "DELETE", "/api/v1/machines/m1/bmc", "")
	s.do(t, 404, CodeNotFound, "GET", "/api/v1/machines/m1/bmc", "")
	s.do(t, 404, CodeNotFound, "DELETE", "/api/v1/machines/nope/bmc", "")
	s.assertNoSecret(t, password, false)
}

func TestBMCEndpointsWithoutLifecycle(t *testing.T) {
	s := newTestServer(t, Config{})
	s.must(t, 201, "POST", "/api/v1/machines", `{"id": "m1"}`)
	for _, c := range [][3]string{
		{"PUT", "/api/v1/machines/m1/bmc", `{"address": "h"}`},
		{"GET", "/api/v1/machines/m1/bmc", ""},
		{"POST", "/api/v1/machines/m1/power", `{"action": "on"}`},
		{"POST", "/api/v1/machines/provision", `{"ids": ["m1"]}`},
	} {
		if r := s.must(t, http.StatusNotImplemented, c[0], c[1], c[2]); r.errorCode() != CodeNotConfigured {
			t.Errorf("%s %s: code %q", c[0], c[1], r.errorCode())
		}
	}
}

func TestBMCRoles(t *testing.T) {
	tokens := testTokens(t, "reader-token-0123456789 read\nadmin-token-0123456789 admin\n")
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "m.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lc, _ := lifecycle.New(lifecycle.Config{Store: st, BMC: bmc.New(bmc.Config{})})
	a, _ := New(Config{Store: st, Tokens: tokens, Lifecycle: lc})
	r := mux.NewRouter()
	a.Register(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	s := &testServer{Server: srv, store: st, router: r}
	const reader, admin = "Authorization: Bearer reader-token-0123456789", "Authorization: Bearer admin-token-0123456789"
	s.must(t, 201, "POST", "/api/v1/machines", `{"id": "m1"}`, admin)
	s.must(t, 200, "PUT", "/api/v1/machines/m1/bmc", `{"address": "h"}`, admin)
	s.must(t, 200, "GET", "/api/v1/machines/m1/bmc", "", reader)
	s.must(t, 200, "GET", "/api/v1/machines/m1/inventory", "", reader)
	for _, c := range [][3]string{
		{"PUT", "/api/v1/machines/m1/bmc", `{"address": "h2"}`},
		{"DELETE", "/api/v1/machines/m1/bmc", ""},
		{"POST", "/api/v1/machines/m1/power", `{"action": "status"}`},
		{"POST", "/api/v1/machines/m1/bootdevice", `{"device": "pxe"}`},
		{"POST", "/api/v1/machines/m1/provision", ""},
		{"POST", "/api/v1/machines/provision", `{"ids": ["m1"]}`},
	} {
		s.must(t, 403, c[0], c[1], c[2], reader)
	}
	s.must(t, 401, "GET", "/api/v1/machines/m1/bmc", "")
}

// TestBulkProvisionBySelector provisions a rack: one machine behind
// ipmi_sim, one behind an unreachable BMC, one without a BMC; a machine of
// another rack is left alone.
func TestBulkProvisionBySelector(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Options{Password: simPassword})
	s := newBMCServer(t, bmcServerOptions{parallel: 2})
	for _, m := range []struct{ id, rack string }{{"r12-a", "r12"}, {"r12-b", "r12"}, {"r12-c", "r12"}, {"r13-a", "r13"}} {
		s.do(t, 201, "", "POST", "/api/v1/machines", `{"id": "`+m.id+`", "labels": {"rack": "`+m.rack+`"}, "state": "ready"}`)
	}
	s.do(t, 200, "", "PUT", "/api/v1/machines/r12-a/bmc", bmcBody(t, wire.BMC{Address: sim.Host, Port: sim.Port, Driver: "ipmi", CipherSuite: sim.CipherSuite, Username: sim.Username, Password: sim.Password}))
	s.do(t, 200, "", "PUT", "/api/v1/machines/r12-b/bmc", bmcBody(t, wire.BMC{Address: "127.0.0.1", Port: closedPort(t), Driver: "redfish", Username: "admin", Password: simPassword}))
	s.do(t, 200, "", "PUT", "/api/v1/machines/r13-a/bmc", bmcBody(t, wire.BMC{Address: "127.0.0.1", Port: closedPort(t), Driver: "redfish"}))

	var ans wire.ProvisionAnswer
	s.do(t, 200, "", "POST", "/api/v1/machines/provision", `{"selector": {"rack": "r12"}}`).decode(t, &ans)
	if len(ans.Outcomes) != 3 || ans.Succeeded != 1 || ans.Failed != 2 {
		t.Fatalf("outcomes: %+v", ans)
	}
	want := []struct {
		id   string
		ok   bool
		code string
	}{{"r12-a", true, ""}, {"r12-b", false, CodeBMCUnreachable}, {"r12-c", false, CodeNoBMC}}
	for i, w := range want {
		o := ans.Outcomes[i]
		code := ""
		if o.Error != nil {
			code = o.Error.Code
		}
		if o.ID != w.id || o.OK != w.ok || code != w.code {
			t.Errorf("outcome %d: %+v (error %+v), want %+v", i, o, o.Error, w)
		}
	}
	if r := ans.Outcomes[0].Result; r == nil || r.Driver != "ipmi" || r.PowerState != "on" {
		t.Errorf("r12-a result: %+v", r)
	}
	if sim.Boot(t) != "pxe" || !sim.Power(t) {
		t.Errorf("simulator: boot %q power %v", sim.Boot(t), sim.Power(t))
	}
	states := map[string]string{}
	var l wire.List
	s.do(t, 200, "", "GET", "/api/v1/machines", "").decode(t, &l)
	for _, it := range l.Items {
		states[it.ID] = string(it.Machine.State)
	}
	if states["r12-a"] != "provisioning" || states["r12-b"] != "failed" || states["r12-c"] != "ready" || states["r13-a"] != "ready" {
		t.Errorf("states: %v", states)
	}
	for _, typ := range s.eventTypes(t, "r13-a") {
		if typ != "bmc.configured" {
			t.Errorf("a machine of another rack was touched: %v", s.eventTypes(t, "r13-a"))
			break
		}
	}

	// By ids: unknown ids fail alone, duplicates count once.
	s.do(t, 200, "", "POST", "/api/v1/machines/provision", `{"ids": ["r12-c", "ghost", "r12-c"]}`).decode(t, &ans)
	if len(ans.Outcomes) != 2 || ans.Outcomes[0].Error.Code != CodeNoBMC || ans.Outcomes[1].ID != "ghost" || ans.Outcomes[1].Error.Code != CodeNotFound {
		t.Fatalf("by ids: %+v", ans)
	}
	// A selector that matches nothing: no outcome.
	s.do(t, 200, "", "POST", "/api/v1/machines/provision", `{"selector": {"rack": "r99"}}`).decode(t, &ans)
	if len(ans.Outcomes) != 0 {
		t.Fatalf("empty selector match: %+v", ans)
	}
	s.assertNoSecret(t, simPassword, false)
}

func TestMachineInventory(t *testing.T) {
	s := newTestServer(t, Config{})
	ctx := context.Background()
	s.must(t, 201, "POST", "/api/v1/machines", `{"id": "m1", "labels": {"rack": "r1"}}`)
	var inv wire.Inventory
	s.must(t, 200, "GET", "/api/v1/machines/m1/inventory", "").decode(t, &inv)
	if inv.Current != nil || len(inv.History) != 0 {
		t.Fatalf("no report yet: %+v", inv)
	}
	if r := s.must(t, 200, "GET", "/api/v1/machines/m1", ""); strings.Contains(r.body, "inventory_summary") || !strings.Contains(s.must(t, 200, "GET", "/api/v1/machines/m1/inventory", "").body, `"current": null`) {
		t.Fatalf("machine without inventory: %s", r.body)
	}
	report := hardware.Inventory{System: hardware.System{Vendor: "Dell Inc.", Product: "PowerEdge R640", BootMode: "uefi"}}
	report.CPU.Cores, report.CPU.Threads, report.CPU.Arch = 32, 64, "x86_64"
	report.Memory.Bytes = 256 << 30
	report.Disks = []hardware.Disk{{Name: "sda", SizeBytes: 1 << 40}, {Name: "sdb", SizeBytes: 1 << 40}}
	report.NICs = []hardware.NIC{{Name: "eno1", MAC: "52:54:00:00:20:01"}}
	for _, disks := range []int{2, 1} {
		r := report
		r.Disks = report.Disks[:disks]
		if _, err := s.store.RecordInventory(ctx, "m1", r); err != nil {
			t.Fatal(err)
		}
	}
	s.must(t, 200, "GET", "/api/v1/machines/m1/inventory", "").decode(t, &inv)
	if inv.Current == nil || len(inv.Current.Disks) != 1 || len(inv.History) != 2 || len(inv.History[0].Inventory.Disks) != 2 || inv.History[0].Seq >= inv.History[1].Seq {
		t.Fatalf("inventory: %+v", inv)
	}
	var m wire.Machine
	r := s.must(t, 200, "GET", "/api/v1/machines/m1", "")
	r.decode(t, &m)
	want := wire.InventorySummary{Vendor: "Dell Inc.", Product: "PowerEdge R640", Arch: "x86_64", CPUCores: 32, CPUThreads: 64, MemoryBytes: 256 << 30, Disks: 1, DiskBytes: 1 << 40, NICs: 1, BootMode: "uefi"}
	if m.InventorySummary == nil || *m.InventorySummary != want {
		t.Fatalf("summary %+v, want %+v", m.InventorySummary, want)
	}
	var l wire.List
	s.must(t, 200, "GET", "/api/v1/machines?label=rack=r1", "").decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].Machine.InventorySummary == nil || l.Items[0].Machine.InventorySummary.CPUCores != 32 {
		t.Fatalf("list: %+v", l.Items)
	}
	// A machine read back, summary included, may be written back as is.
	s.must(t, 200, "PUT", "/api/v1/machines/m1", r.body, "If-Match: "+r.header.Get("ETag"))
}
