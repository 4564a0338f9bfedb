package ui_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"

	"matchbox/api"
	"matchbox/boothttp"
	"matchbox/hardware"
	"matchbox/hardware/facts"
	"matchbox/lifecycle"
	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/ui"
)

const (
	adminToken = "admin-token-0123456789"
	readToken  = "read-token-0123456789ab"
)

// console is the API and the console on one test server over a real store,
// with the boot endpoints rendering behind GET /api/v1/render.
type console struct {
	srv       *httptest.Server
	store     *store.Store
	handler   http.Handler
	lifecycle *lifecycle.Service
	// boot serves the boot endpoints, recording what they observe
	// straight into the store.
	boot http.Handler
	// apiCalls counts the requests the console made to the API (its
	// in-process calls, not the test's own API requests).
	apiCalls *atomic.Int64
}

// countingHandler counts the requests it passes on.
type countingHandler struct {
	next http.Handler
	n    *atomic.Int64
}

func (h countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n.Add(1)
	h.next.ServeHTTP(w, r)
}

// storeSink records boot events at once, creating unknown machines, as
// matchbox serve's recorder does in the background.
type storeSink struct{ st *store.Store }

func (s storeSink) Record(ev matchbox.BootEvent) bool {
	return s.st.DiscoverAndAppendEvents(context.Background(), []matchbox.BootEvent{ev}) == nil
}

func newConsole(t testing.TB, withTokens bool) *console {
	t.Helper()
	return newConsoleWith(t, withTokens, nil)
}

// newConsoleWith is newConsole with a lifecycle built by newLifecycle from
// the store (nil: no lifecycle).
func newConsoleWith(t testing.TB, withTokens bool, newLifecycle func(st *store.Store) *lifecycle.Service) *console {
	t.Helper()
	return newConsoleOpts(t, consoleOpts{tokens: withTokens, lifecycle: newLifecycle})
}

// consoleOpts configures a test console.
type consoleOpts struct {
	// tokens loads adminToken and readToken.
	tokens bool
	// lifecycle builds the lifecycle from the store; nil: none.
	lifecycle func(st *store.Store) *lifecycle.Service
	// sessionTTL is the console's; 0: its default.
	sessionTTL time.Duration
	// logger receives the API's and the console's logs; nil: none.
	logger *slog.Logger
	// tls serves HTTPS with this configuration (httptest's certificate).
	tls *tls.Config
	// wrap wraps the server's handler; nil: none.
	wrap func(http.Handler) http.Handler
}

func newConsoleOpts(t testing.TB, o consoleOpts) *console {
	t.Helper()
	withTokens, newLifecycle := o.tokens, o.lifecycle
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(dir, "matchbox.db"), Synchronous: "NORMAL", ParseFact: facts.ParseFact})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := api.Config{Store: st, ParseFact: facts.ParseFact, Logger: o.logger}
	var lc *lifecycle.Service
	if newLifecycle != nil {
		lc = newLifecycle(st)
		t.Cleanup(lc.Close)
		cfg.Lifecycle = lc
	}
	if withTokens {
		path := filepath.Join(dir, "tokens")
		if err := os.WriteFile(path, []byte(adminToken+" admin\n"+readToken+" read\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.Tokens, err = api.LoadTokens(path); err != nil {
			t.Fatal(err)
		}
	}
	bc := boothttp.Config{Snapshot: st.Snapshot, Machines: boothttp.IndexLookup{Index: st}, Events: storeSink{st}}
	if lc != nil {
		bc.Lifecycle = lc
	}
	boot, err := boothttp.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Renderer = boot
	a, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	apiCalls := new(atomic.Int64)
	uc := ui.Config{Machines: st, Snapshot: st.Snapshot, ParseFact: facts.ParseFact, Auth: a, API: countingHandler{r, apiCalls}, PollInterval: 50 * time.Millisecond, SessionTTL: o.sessionTTL, Logger: o.logger}
	if lc != nil {
		uc.BMCs = lc
	}
	c, err := ui.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	r.PathPrefix(ui.Prefix).Handler(c)
	var h http.Handler = r
	if o.wrap != nil {
		h = o.wrap(r)
	}
	srv := httptest.NewUnstartedServer(h)
	if o.logger != nil {
		srv.Config.ErrorLog = slog.NewLogLogger(o.logger.Handler(), slog.LevelError)
	}
	if o.tls != nil {
		srv.TLS = o.tls
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &console{srv: srv, store: st, handler: r, lifecycle: lc, boot: boot.Handler(), apiCalls: apiCalls}
}

func (c *console) putMachine(t testing.TB, m *matchbox.Machine) {
	t.Helper()
	if _, err := c.store.PutMachine(context.Background(), m, -1); err != nil {
		t.Fatal(err)
	}
}

// browser is an HTTP client with cookies that does not follow redirects.
func (c *console) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, cl *http.Client, method, u string, form url.Values) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func (c *console) login(t *testing.T, token string) (*http.Client, string) {
	t.Helper()
	cl := c.browser(t)
	status, _, h := do(t, cl, "POST", c.srv.URL+"/ui/login", url.Values{"token": {token}})
	if status != http.StatusSeeOther {
		t.Fatalf("login: status %d", status)
	}
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age="} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, token) {
		t.Errorf("session cookie carries the API token")
	}
	_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/", nil)
	return cl, csrfOf(t, page)
}

func TestLoginRolesAndCSRF(t *testing.T) {
	c := newConsole(t, true)
	c.putMachine(t, &matchbox.Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}, State: matchbox.StateReady, Labels: map[string]string{"rack": "r1"}})

	anon := c.browser(t)
	if status, _, h := do(t, anon, "GET", c.srv.URL+"/ui/", nil); status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("anonymous fleet: status %d to %q, want 303 to /ui/login", status, h.Get("Location"))
	}
	if status, _, _ := do(t, anon, "POST", c.srv.URL+"/ui/login", url.Values{"token": {"not-a-valid-token-at-all"}}); status != http.StatusUnauthorized {
		t.Fatalf("bad token: status %d, want 401", status)
	}
	if status, _, _ := do(t, anon, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"state": {"failed"}}); status != http.StatusUnauthorized {
		t.Fatalf("anonymous action: status %d, want 401", status)
	}

	reader, readCSRF := c.login(t, readToken)
	for _, path := range []string{"/ui/", "/ui/machines/m1", "/ui/groups"} {
		status, page, _ := do(t, reader, "GET", c.srv.URL+path, nil)
		if status != http.StatusOK {
			t.Fatalf("read %s: status %d", path, status)
		}
		for _, action := range []string{`action="/ui/machines/m1/`, `action="/ui/provision"`} {
			if strings.Contains(page, action) {
				t.Errorf("read role sees an action form (%s) on %s", action, path)
			}
		}
	}
	if status, _, _ := do(t, reader, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {readCSRF}, "state": {"failed"}}); status != http.StatusForbidden {
		t.Errorf("read role action: status %d, want 403", status)
	}

	admin, adminCSRF := c.login(t, adminToken)
	_, page, _ := do(t, admin, "GET", c.srv.URL+"/ui/machines/m1", nil)
	if !strings.Contains(page, `action="/ui/machines/m1/state"`) {
		t.Fatalf("admin sees no state form")
	}
	for _, tc := range []struct {
		name string
		csrf []string
	}{
		{"no CSRF token", nil},
		{"another session's CSRF token", []string{readCSRF}},
		{"an empty CSRF token", []string{""}},
	} {
		if status, _, _ := do(t, admin, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": tc.csrf, "state": {"failed"}}); status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tc.name, status)
		}
	}
	if m, _, _ := c.store.Machine(context.Background(), "m1"); m.State != matchbox.StateReady {
		t.Fatalf("a refused action changed the machine: state %s", m.State)
	}
	status, _, h := do(t, admin, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {adminCSRF}, "state": {"failed"}})
	if status != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/ui/machines/m1?") {
		t.Fatalf("admin set state: status %d to %q", status, h.Get("Location"))
	}
	if m, _, _ := c.store.Machine(context.Background(), "m1"); m.State != matchbox.StateFailed {
		t.Fatalf("state after the admin's action: %s, want failed", m.State)
	}
	// The API's validation answers through the console.
	if status, body, _ := do(t, admin, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {adminCSRF}, "state": {"bogus"}}); status != http.StatusBadRequest || !strings.Contains(body, "bogus") {
		t.Errorf("bad state: status %d %q, want 400 naming it", status, body)
	}
	status, _, _ = do(t, admin, "POST", c.srv.URL+"/ui/machines/m1/labels", url.Values{"csrf": {adminCSRF}, "labels": {"rack=r2\nrole=worker"}})
	if status != http.StatusSeeOther {
		t.Fatalf("set labels: status %d", status)
	}
	if m, _, _ := c.store.Machine(context.Background(), "m1"); m.Labels["rack"] != "r2" || m.Labels["role"] != "worker" {
		t.Fatalf("labels after the admin's action: %v", m.Labels)
	}

	// Logging out ends the session.
	if status, _, _ := do(t, admin, "POST", c.srv.URL+"/ui/logout", url.Values{"csrf": {adminCSRF}}); status != http.StatusSeeOther {
		t.Fatalf("logout: status %d", status)
	}
	if status, _, _ := do(t, admin, "GET", c.srv.URL+"/ui/", nil); status != http.StatusSeeOther {
		t.Fatalf("after logout: status %d, want a redirect to the login page", status)
	}
}

func TestLoopbackRuleWithoutTokens(t *testing.T) {
	c := newConsole(t, false)
	c.putMachine(t, &matchbox.Machine{ID: "m1", State: matchbox.StateReady})
	cl := c.browser(t)
	status, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/machines/m1", nil)
	if status != http.StatusOK || !strings.Contains(page, `action="/ui/machines/m1/state"`) {
		t.Fatalf("loopback client: status %d, admin forms shown: %v", status, strings.Contains(page, "/state"))
	}
	if status, _, _ := do(t, cl, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"state": {"failed"}}); status != http.StatusForbidden {
		t.Errorf("loopback action without CSRF: status %d, want 403", status)
	}
	if status, _, _ := do(t, cl, "POST", c.srv.URL+"/ui/machines/m1/state", url.Values{"csrf": {csrfOf(t, page)}, "state": {"failed"}}); status != http.StatusSeeOther {
		t.Errorf("loopback action: status %d, want 303", status)
	}
}

func TestFleetFilters(t *testing.T) {
	c := newConsole(t, true)
	ctx := context.Background()
	for i, mem := range []uint64{16 << 30, 128 << 30, 256 << 30} {
		id := fmt.Sprintf("m%d", i)
		c.putMachine(t, &matchbox.Machine{ID: id, State: matchbox.StateReady, Labels: map[string]string{"rack": fmt.Sprint("r", i%2)}})
		if _, err := c.store.RecordInventory(ctx, id, hardware.Inventory{System: hardware.System{Vendor: "QEMU"}, Memory: hardware.Memory{Bytes: mem}}); err != nil {
			t.Fatal(err)
		}
	}
	c.putMachine(t, &matchbox.Machine{ID: "m9", State: matchbox.StateFailed})
	cl, _ := c.login(t, readToken)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"m0", "m1", "m2", "m9"}},
		{"?state=failed", []string{"m9"}},
		{"?labels=rack%3Dr0", []string{"m0", "m2"}},
		{"?facts=" + url.QueryEscape("memory.bytes >= 64GiB"), []string{"m1", "m2"}},
		{"?facts=" + url.QueryEscape("memory.bytes >= 64GiB") + "&labels=rack%3Dr0", []string{"m2"}},
	}
	rowRE := regexp.MustCompile(`<td><a href="/ui/machines/([^"]+)">`)
	for _, tc := range tests {
		_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/"+tc.query, nil)
		var got []string
		for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("fleet%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/?facts="+url.QueryEscape("memory.bytes >>= 1"), nil)
	if !strings.Contains(page, `class="error"`) {
		t.Errorf("a malformed fact filter shows no error")
	}
}

func TestMachineStreamLive(t *testing.T) {
	c := newConsole(t, true)
	c.putMachine(t, &matchbox.Machine{ID: "m1", State: matchbox.StateReady})
	cl, _ := c.login(t, readToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.srv.URL+"/ui/machines/m1/stream?after=0", nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream Content-Type %q", ct)
	}
	if err := c.store.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: "m1", Type: "bmc.power", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"type":"bmc.power"`) || !strings.Contains(line, `"state":"ready"`) {
				t.Fatalf("stream event %s", line)
			}
			return
		}
	}
	t.Fatalf("stream ended without the event: %v", sc.Err())
}

func TestEventsPageAndFleetStream(t *testing.T) {
	c := newConsole(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.putMachine(t, &matchbox.Machine{ID: "m1"})
	c.putMachine(t, &matchbox.Machine{ID: "m2"})
	if err := c.store.AppendEvents(ctx, []matchbox.BootEvent{
		{MachineID: "m1", Type: "dhcp.ack", At: time.Now()},
		{MachineID: "m2", Type: "http.ipxe", At: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}
	cl, _ := c.login(t, readToken)
	_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/events?type=dhcp.", nil)
	if !strings.Contains(page, "<strong>dhcp.ack</strong>") || strings.Contains(page, "<strong>http.ipxe</strong>") {
		t.Fatalf("events filtered by dhcp.:\n%s", page)
	}
	m := regexp.MustCompile(`data-stream="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the events page names no stream")
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", c.srv.URL+strings.ReplaceAll(m[1], "&amp;", "&"), nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// A later event of another type is filtered out; the dhcp one arrives.
	if err := c.store.AppendEvents(ctx, []matchbox.BootEvent{
		{MachineID: "m1", Type: "http.ipxe", At: time.Now()},
		{MachineID: "m2", Type: "dhcp.discover", At: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"machine":"m2"`) || !strings.Contains(line, `"type":"dhcp.discover"`) {
				t.Fatalf("fleet stream event %s, want m2's dhcp.discover", line)
			}
			return
		}
	}
	t.Fatalf("stream ended without the event: %v", sc.Err())
}

// putCatalog writes profiles, groups and templates in one transaction.
func (c *console) putCatalog(t testing.TB, objs ...*store.Object) {
	t.Helper()
	if _, err := c.store.UpdateCatalog(context.Background(), func(tx store.CatalogTx) error {
		for _, o := range objs {
			if _, err := tx.Put(o, 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// testCatalog is a rack group installing with a generic template, and a
// default group for every other machine.
func testCatalog() []*store.Object {
	return []*store.Object{
		{Kind: matchbox.TemplateGeneric, ID: "install.txt", Template: &matchbox.Template{Kind: matchbox.TemplateGeneric, Name: "install.txt", Content: "install for {{.request.query.mac}} in {{.rack}}\n"}},
		{Kind: matchbox.KindProfile, ID: "install", Profile: &matchbox.Profile{ID: "install", Boot: matchbox.Boot{Kernel: "/assets/install/vmlinuz", Initrd: []string{"/assets/install/initrd.img"}, Args: []string{"console=ttyS0", "rack={{.rack}}"}}, GenericID: "install.txt"}},
		{Kind: matchbox.KindProfile, ID: "discovery", Profile: &matchbox.Profile{ID: "discovery", Boot: matchbox.Boot{Kernel: "/assets/discovery/vmlinuz", Args: []string{"discovery"}}}},
		{Kind: matchbox.KindGroup, ID: "rack1", Group: &matchbox.Group{ID: "rack1", Profile: "install", Selector: map[string]string{"rack": "r1"}}},
		{Kind: matchbox.KindGroup, ID: "default", Group: &matchbox.Group{ID: "default", Profile: "discovery"}},
	}
}

// storeState is what viewing must not change: every machine with its
// version, and every event.
func storeState(t *testing.T, st *store.Store) string {
	t.Helper()
	ctx := context.Background()
	ms, err := st.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range ms {
		_, v, err := st.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "machine %s state %s version %d labels %v\n", m.ID, m.State, v, m.Labels)
	}
	evs, err := st.FleetEvents(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		fmt.Fprintf(&b, "event %d %s %s\n", ev.ID, ev.MachineID, ev.Type)
	}
	return b.String()
}

// TestRenderedBootChangesNothing: the machine page and the groups page show
// the iPXE script and config a machine would get now, rendered by the boot
// endpoints through GET /api/v1/render, and viewing them creates no
// machine, records no event and moves no state. A real boot request for
// the same unknown MAC does all of that, as the control.
func TestRenderedBootChangesNothing(t *testing.T) {
	c := newConsole(t, true)
	c.putCatalog(t, testCatalog()...)
	c.putMachine(t, &matchbox.Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}, State: matchbox.StateReady, Labels: map[string]string{"rack": "r1"}})
	if err := c.store.AppendEvents(context.Background(), []matchbox.BootEvent{{MachineID: "m1", Type: "dhcp.ack", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	const unknown = "52:54:00:00:00:99"
	before := storeState(t, c.store)
	cl, _ := c.login(t, readToken)

	tests := []struct {
		path string
		want []string
	}{
		{"/ui/machines/m1", []string{
			"<dd>rack1</dd>", "<dd>install</dd>",
			"kernel /assets/install/vmlinuz console=ttyS0 rack=r1",
			"initrd /assets/install/initrd.img",
			`id="render-generic">install for 52:54:00:00:00:01 in r1`,
		}},
		{"/ui/groups?machine=m1", []string{"<dd>rack1</dd>", "rack=r1", "install for 52:54:00:00:00:01 in r1"}},
		{"/ui/groups?machine=" + url.QueryEscape(unknown), []string{"<dd>default</dd>", "<dd>discovery</dd>", "kernel /assets/discovery/vmlinuz discovery"}},
		{"/ui/groups?machine=52-54-00-00-00-99", []string{"<dd>default</dd>", "kernel /assets/discovery/vmlinuz discovery"}},
		{"/ui/groups?machine=no-such-machine", []string{"is no machine&#39;s id, nor a MAC or a UUID"}},
	}
	for _, tc := range tests {
		status, page, _ := do(t, cl, "GET", c.srv.URL+tc.path, nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d", tc.path, status)
		}
		for _, want := range tc.want {
			if !strings.Contains(page, want) {
				t.Errorf("GET %s lacks %q", tc.path, want)
			}
		}
		if t.Failed() {
			t.Logf("page:\n%s", page)
			t.FailNow()
		}
	}
	if after := storeState(t, c.store); after != before {
		t.Fatalf("viewing changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The control: the same unknown MAC booting for real is recorded.
	req := httptest.NewRequest(http.MethodGet, "/ipxe?mac="+unknown, nil)
	req.RemoteAddr = "10.0.0.9:1234"
	rec := httptest.NewRecorder()
	c.boot.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "kernel /assets/discovery/vmlinuz discovery") {
		t.Fatalf("boot request: %d %s", rec.Code, rec.Body.String())
	}
	if after := storeState(t, c.store); after == before {
		t.Fatalf("a real boot request changed nothing either: the check above proves nothing")
	}
}

// groupRow returns the groups page's table row of group id.
func groupRow(t *testing.T, page, id string) string {
	t.Helper()
	for _, row := range strings.Split(page, "<tr>") {
		if strings.HasPrefix(row, "\n<td>"+id+"<") || strings.HasPrefix(row, "\n<td>"+id+"</td>") {
			return row[:strings.Index(row, "</tr>")]
		}
	}
	t.Fatalf("no row of group %s in the groups page:\n%s", id, page)
	return ""
}

// TestGroupsSelectionAndWarnings: the groups page counts the machines each
// group selects now, as the boot endpoints select (checked against GET
// /api/v1/render for every machine), links each count to the fleet
// filtered to those machines, and shows each group's ties and dangling
// references.
func TestGroupsSelectionAndWarnings(t *testing.T) {
	c := newConsole(t, true)
	c.putCatalog(t, append(testCatalog(),
		&store.Object{Kind: matchbox.KindGroup, ID: "workers", Group: &matchbox.Group{ID: "workers", Profile: "install", Selector: map[string]string{"role": "worker"}}},
		&store.Object{Kind: matchbox.KindGroup, ID: "orphan", Group: &matchbox.Group{ID: "orphan", Profile: "missing", Selector: map[string]string{"rack": "r9"}, Priority: 3}},
		&store.Object{Kind: matchbox.KindProfile, ID: "broken", Profile: &matchbox.Profile{ID: "broken", Boot: matchbox.Boot{Kernel: "/k"}, GenericID: "nope.txt"}},
		&store.Object{Kind: matchbox.KindGroup, ID: "odd", Group: &matchbox.Group{ID: "odd", Profile: "broken", Selector: map[string]string{"os": "odd"}, Priority: 5}},
	)...)
	machines := []struct {
		id     string
		labels map[string]string
	}{
		{"m1", map[string]string{"rack": "r1"}},
		{"m2", map[string]string{"rack": "r1", "role": "worker"}},
		{"m3", map[string]string{"role": "worker"}},
		{"m4", nil},
		{"m5", map[string]string{"rack": "r9"}},
	}
	for i, m := range machines {
		c.putMachine(t, &matchbox.Machine{ID: m.id, MACs: []string{fmt.Sprintf("52:54:00:00:01:%02x", i)}, State: matchbox.StateReady, Labels: m.labels})
	}
	want := map[string][]string{"rack1": {"m1"}, "workers": {"m2", "m3"}, "default": {"m4"}, "orphan": {"m5"}, "odd": nil}

	// The boot endpoints agree on each machine's group.
	for i, m := range machines {
		req, _ := http.NewRequest("GET", c.srv.URL+fmt.Sprintf("/api/v1/render?mac=52:54:00:00:01:%02x", i), nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var group string
		for g, ids := range want {
			if slices.Contains(ids, m.id) {
				group = g
			}
		}
		if !strings.Contains(string(b), `"group": "`+group+`"`) {
			t.Fatalf("render for %s: %s, want group %s", m.id, b, group)
		}
	}

	cl, _ := c.login(t, readToken)
	_, page, _ := do(t, cl, "GET", c.srv.URL+"/ui/groups", nil)
	rowRE := regexp.MustCompile(`<td><a href="/ui/machines/([^"]+)">`)
	for g, ids := range want {
		row := groupRow(t, page, g)
		link := fmt.Sprintf(`<a class="selected" href="/ui/?group=%s">%d machines</a>`, g, len(ids))
		if !strings.Contains(row, link) {
			t.Errorf("group %s's row lacks %s:\n%s", g, link, row)
			continue
		}
		_, fleet, _ := do(t, cl, "GET", c.srv.URL+"/ui/?group="+g, nil)
		var got []string
		for _, m := range rowRE.FindAllStringSubmatch(fleet, -1) {
			got = append(got, m[1])
		}
		if diff := cmp.Diff(ids, got); diff != "" {
			t.Errorf("fleet of group %s (-want +got):\n%s", g, diff)
		}
	}
	warnings := map[string][]string{
		"workers": {`groups &#34;workers&#34; {role=worker} and &#34;rack1&#34; {rack=r1} can both match`},
		"rack1":   {`groups &#34;workers&#34; {role=worker} and &#34;rack1&#34; {rack=r1} can both match`},
		"orphan":  {`dangling reference: group &#34;orphan&#34;: profile &#34;missing&#34; does not exist`},
		"odd":     {`dangling reference: profile &#34;broken&#34;: generic_id &#34;nope.txt&#34; names no generic template`},
		"default": nil,
	}
	for g, ws := range warnings {
		row := groupRow(t, page, g)
		if n := strings.Count(row, `class="warning"`); n != len(ws) {
			t.Errorf("group %s shows %d warnings, want %d:\n%s", g, n, len(ws), row)
		}
		for _, w := range ws {
			if !strings.Contains(row, w) {
				t.Errorf("group %s's row lacks the warning %s:\n%s", g, w, row)
			}
		}
	}
	if _, fleet, _ := do(t, cl, "GET", c.srv.URL+"/ui/?group=nosuch", nil); !strings.Contains(fleet, `group &#34;nosuch&#34; does not exist`) {
		t.Errorf("fleet of an unknown group shows no error")
	}
}
