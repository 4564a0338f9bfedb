package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"matchbox/hardware"
	"matchbox/internal/needs"
	"matchbox/lifecycle"
	"matchbox/matchbox"
)

// screenshotDir is where the browser test writes its screenshots:
// $MATCHBOX_UI_SCREENSHOTS when set (ui/testdata/screenshots holds the
// committed ones), else a folder the test keeps and logs.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("MATCHBOX_UI_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "matchbox-ui-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowser drives the console in a real headless Chromium: a reader sees
// no action, an admin filters the fleet by a hardware fact, opens a machine,
// provisions it against ipmi_sim from a second tab, and the first tab's
// timeline gains the BMC and state events live, without a reload.
func TestBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		needs.Skip(t, "chromium not installed (Debian package chromium): skipping the browser test")
	}
	c, sim := bmcConsole(t)
	c.putCatalog(t, testCatalog()...)
	ctx := context.Background()
	for i, mem := range []uint64{128 << 30, 16 << 30, 256 << 30} {
		id := fmt.Sprintf("node%d", i+1)
		c.putMachine(t, &matchbox.Machine{ID: id, MACs: []string{fmt.Sprintf("52:54:00:00:10:%02x", i+1)}, State: matchbox.StateReady, Labels: map[string]string{"rack": "r1"}})
		inv := hardware.Inventory{System: hardware.System{Vendor: "QEMU", Product: "Standard PC (Q35)", BootMode: "uefi"}, CPU: hardware.CPU{Model: "EPYC", Cores: 8, Threads: 16, Arch: "x86_64"}, Memory: hardware.Memory{Bytes: mem}, Disks: []hardware.Disk{{Name: "vda", SizeBytes: 64 << 30}}, CollectedAt: time.Now()}
		if _, err := c.store.RecordInventory(ctx, id, inv); err != nil {
			t.Fatal(err)
		}
		if err := c.store.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: id, Type: "dhcp.ack", At: time.Now().Add(-time.Minute), Detail: map[string]any{"ip": fmt.Sprintf("10.0.0.%d", i+10)}}}); err != nil {
			t.Fatal(err)
		}
	}
	c.setSimBMC(t, "node3", sim)

	shots := screenshotDir(t)
	t.Logf("screenshots in %s", shots)
	alloc, cancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancel()
	tab, cancel := chromedp.NewContext(alloc)
	defer cancel()
	tab, cancel = context.WithTimeout(tab, 4*time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	// shot writes a screenshot; a capture that does not answer within 30
	// seconds (Chromium under load) is tried once more.
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var img []byte
			var err error
			for range 2 {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				img, err = chromedp.FullScreenshot(90)(sctx, tg)
				cancel()
				if err == nil {
					return os.WriteFile(filepath.Join(shots, name+".jpg"), img, 0o644)
				}
			}
			return fmt.Errorf("screenshot %s: %w", name, err)
		})
	}
	// loaded waits until the page's address contains part and it has
	// loaded: a form's answer, not the page that sent it.
	loaded := func(part string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			return waitFor(ctx, tg, fmt.Sprintf(`location.href.includes(%q) && document.readyState === "complete"`, part))
		})
	}
	login := func(token string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(c.srv.URL+"/ui/login"),
			chromedp.WaitVisible(css(`#token`)),
			chromedp.SendKeys(css(`#token`), token),
			chromedp.Submit(css(`#token`)),
			chromedp.WaitVisible(css(`table.fleet`)),
		)
	}
	eval := func(tab context.Context, expr string) any {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Evaluate[any](expr))
		must(err)
		return v
	}
	// actionForms counts the page's post forms other than logging out.
	const actionForms = `document.querySelectorAll('form[method=post]:not([action="/ui/logout"])').length`

	// A reader sees no action anywhere.
	must(chromedp.Do(tab, chromedp.Navigate(c.srv.URL+"/ui/login"), shot("login"), login(readToken)))
	if href := eval(tab, `location.href`).(string); strings.Contains(href, readToken) {
		t.Fatalf("the token is in the address after logging in: %s", href)
	}
	if n := eval(tab, actionForms); n != float64(0) {
		t.Fatalf("the reader's fleet page has %v action forms", n)
	}
	must(chromedp.Do(tab, chromedp.Navigate(c.srv.URL+"/ui/machines/node3"), chromedp.WaitVisible(css(`#events`))))
	if n := eval(tab, actionForms); n != float64(0) {
		t.Fatalf("the reader's machine page has %v action forms", n)
	}
	must(chromedp.Do(tab, shot("machine-read"), chromedp.Click(css(`header form button`)), chromedp.WaitVisible(css(`#token`))))

	// The admin filters the fleet by a hardware fact.
	must(chromedp.Do(tab, login(adminToken),
		chromedp.SendKeys(css(`input[name=facts]`), "memory.bytes >= 64GiB"),
		chromedp.Submit(css(`input[name=facts]`)),
		loaded("facts="),
		chromedp.WaitVisible(css(`table.fleet`)),
		shot("fleet")))
	if rows := eval(tab, `[...document.querySelectorAll('table.fleet tbody td:first-child a')].map(a => a.textContent).join(",")`); rows != "node1,node3" {
		t.Fatalf("fleet filtered by memory.bytes >= 64GiB: %v, want node1,node3", rows)
	}
	must(chromedp.Do(tab,
		chromedp.Click(css(`a[href="/ui/machines/node3"]`)),
		loaded("/ui/machines/node3"),
		chromedp.WaitVisible(css(`#provision`))))
	eval(tab, `window.notReloaded = true`)
	if state, _ := chromedp.Run(tab, chromedp.Text(css(`#state`))); strings.TrimSpace(state) != "ready" {
		t.Fatalf("node3's state %q, want ready", state)
	}

	// A second tab provisions node3; the first tab's timeline gains the
	// events without a reload.
	tab2, cancel2 := chromedp.NewContext(tab)
	defer cancel2()
	must(chromedp.Do(tab2, chromedp.Navigate(c.srv.URL+"/ui/machines/node3"), chromedp.WaitVisible(css(`#provision`)),
		chromedp.Click(css(`#provision`)), loaded("msg="), chromedp.WaitVisible(css(`p.notice`))))
	if notice, _ := chromedp.Run(tab2, chromedp.Text(css(`p.notice`))); !strings.Contains(notice, "Provisioning started") {
		t.Fatalf("provision answered %q", notice)
	}
	_, err = chromedp.Run(tab, chromedp.Poll[bool](`[...document.querySelectorAll('#events li.new strong')].some(s => s.textContent === "bmc.provision_boot") && document.querySelector('#state').textContent.trim() === "provisioning"`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		live := eval(tab, `[...document.querySelectorAll('#events li.new strong')].map(s => s.textContent).join(",")`)
		t.Fatalf("the timeline did not gain bmc.provision_boot with state provisioning: live events %v: %v", live, err)
	}
	must(chromedp.Do(tab, shot("machine-live")))
	if eval(tab, `window.notReloaded === true`) != true {
		t.Fatal("the machine page was reloaded")
	}
	if live := eval(tab, `[...document.querySelectorAll('#events li.new strong')].map(s => s.textContent).join(",")`).(string); !strings.Contains(live, lifecycle.EventProvisioning) {
		t.Fatalf("live events %v lack %s", live, lifecycle.EventProvisioning)
	}
	if got := sim.Boot(t); got != "pxe" {
		t.Errorf("ipmi_sim's boot device %q after provisioning, want pxe", got)
	}

	// The other pages: the groups page rendering for a machine, the
	// events, a bulk provisioning's confirmation (cancelled).
	must(chromedp.Do(tab,
		chromedp.Navigate(c.srv.URL+"/ui/groups?machine=node1"), chromedp.WaitVisible(css(`#render-ipxe`)), shot("groups"),
		chromedp.Navigate(c.srv.URL+"/ui/events"), chromedp.WaitVisible(css(`#events`)), shot("events"),
		chromedp.Navigate(c.srv.URL+"/ui/?labels=rack%3Dr1"), chromedp.WaitVisible(css(`table.fleet`)),
		chromedp.Click(css(`form[action="/ui/provision"] button`)), loaded("/ui/provision"), chromedp.WaitVisible(css(`#confirm-count`)), shot("confirm"),
	))
	if n := eval(tab, `document.getElementById("confirm-count").textContent`); n != "3 machines" {
		t.Fatalf("the confirmation names %v, want 3 machines", n)
	}
	if ids := eval(tab, `[...document.querySelectorAll("#confirm-machines a")].map(a => a.textContent).join(",")`); ids != "node1,node2,node3" {
		t.Fatalf("the confirmation lists %v", ids)
	}
	if got := eval(tab, `document.querySelector('#render-ipxe') === null`); got != true {
		t.Fatalf("confirmation page shows a render")
	}

	// State badges say their state in text, not colour alone.
	must(chromedp.Do(tab, chromedp.Navigate(c.srv.URL+"/ui/"), chromedp.WaitVisible(css(`table.fleet`))))
	if bad := eval(tab, `[...document.querySelectorAll(".badge")].filter(b => !["discovered","ready","provisioning","provisioned","failed"].includes(b.textContent.trim())).length`); bad != float64(0) {
		t.Fatalf("%v state badges carry no state name", bad)
	}
	if rows := eval(tab, `[...document.querySelectorAll("table.fleet tbody tr")].map(r => r.cells[0].textContent.trim() + ":" + r.cells[1].textContent.trim()).join(",")`); rows != "node1:ready,node2:ready,node3:provisioning" {
		t.Fatalf("fleet badges read %v", rows)
	}

	keyboard(t, tab, c.srv.URL)
	phone(t, tab, c.srv.URL, shot)
}

// waitFor evaluates expr every 100 ms until it is true, for 30 seconds,
// through navigations (an evaluation the navigation cuts short is
// repeated).
func waitFor(ctx context.Context, tg *chromedp.Target, expr string) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Evaluate[bool](expr)(ectx, tg)
		cancel()
		if err == nil && ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s never held (last error %v)", expr, last)
}

// focused describes the focused element and whether its focus shows.
const focused = `(() => { const e = document.activeElement; const s = getComputedStyle(e);
  return {tag: e.tagName.toLowerCase(), name: e.getAttribute("name") || "", id: e.id || "", href: e.getAttribute("href") || "",
    text: (e.textContent || "").trim().slice(0, 40), inFleet: !!e.closest("table.fleet"), inActions: !!e.closest("section.actions"),
    outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2 }; })()`

type focus struct {
	Tag, Name, ID, Href, Text string
	InFleet, InActions        bool
	Outline                   bool
}

// tabThrough presses Tab n times from the top of the page and returns
// where the focus went.
func tabThrough(t *testing.T, tab context.Context, n int) []focus {
	t.Helper()
	var out []focus
	for range n {
		if err := chromedp.Do(tab, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		f, err := chromedp.Run(tab, chromedp.Evaluate[focus](focused))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// keyboard checks that Tab reaches the skip link first, then the fleet's
// filters and its rows, and on a machine page its actions, every focused
// control showing its focus; and that Enter in the filter applies it.
func keyboard(t *testing.T, tab context.Context, base string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`table.fleet`))); err != nil {
		t.Fatal(err)
	}
	fs := tabThrough(t, tab, 25)
	if fs[0].Href != "#main" {
		t.Errorf("the first Tab focuses %+v, want the skip link to #main", fs[0])
	}
	reached := map[string]bool{}
	for _, f := range fs {
		if f.Tag == "body" { // past the last control: the browser's own
			continue
		}
		if !f.Outline {
			t.Errorf("focus on %+v is not visible (no outline)", f)
		}
		switch {
		case f.Name != "":
			reached["filter "+f.Name] = true
		case f.InFleet && strings.HasPrefix(f.Href, "/ui/machines/"):
			reached["row"] = true
		}
	}
	for _, want := range []string{"filter state", "filter labels", "filter facts", "filter group", "row"} {
		if !reached[want] {
			t.Errorf("Tab never reached the %s on the fleet page: %+v", want, fs)
		}
	}
	// Typing in the focused labels filter and pressing Enter filters.
	if err := chromedp.Do(tab, chromedp.Focus(chromedp.CSS(`input[name=labels]`)), chromedp.KeyEvent("rack=none\r")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		return waitFor(ctx, tg, `location.href.includes("labels=rack%3Dnone") && document.readyState === "complete"`)
	})); err != nil {
		t.Fatalf("Enter in the labels filter did not filter: %v", err)
	}

	if err := chromedp.Do(tab, chromedp.Navigate(base+"/ui/machines/node1"), chromedp.WaitVisible(chromedp.CSS(`#provision`))); err != nil {
		t.Fatal(err)
	}
	fs = tabThrough(t, tab, 30)
	var actions []string
	for _, f := range fs {
		if f.Tag == "body" { // past the last control: the browser's own
			continue
		}
		if !f.Outline {
			t.Errorf("focus on %+v is not visible (no outline)", f)
		}
		if f.InActions {
			actions = append(actions, f.Text)
		}
	}
	for _, want := range []string{"Provision", "Power on", "Power cycle", "Set boot device once", "Set state", "Set labels"} {
		if !slices.Contains(actions, want) {
			t.Errorf("Tab never reached the %q action on the machine page: reached %q", want, actions)
		}
	}
}

// phone loads the fleet and a machine page 390 pixels wide (a phone), takes
// their screenshots and checks that neither scrolls sideways.
func phone(t *testing.T, tab context.Context, base string, shot func(string) chromedp.Action[chromedp.Void]) {
	t.Helper()
	for _, p := range []struct{ path, wait, name string }{
		{"/ui/", "table.fleet", "fleet-phone"},
		{"/ui/machines/node3", "#events", "machine-phone"},
	} {
		if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)), shot(p.name)); err != nil {
			t.Fatal(err)
		}
		w, err := chromedp.Run(tab, chromedp.Evaluate[[]float64](`[document.documentElement.scrollWidth, window.innerWidth, Math.max(0, ...[...document.querySelectorAll(".scroll")].map(e => e.scrollWidth - e.clientWidth))]`))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s at 390 px: document scrollWidth %v, viewport %v, widest inner overflow %v px", p.path, w[0], w[1], w[2])
		if w[1] != 390 || w[0] > w[1] {
			t.Errorf("%s scrolls sideways on a phone: document %v px wide in a %v px viewport", p.path, w[0], w[1])
		}
		if w[2] > 0 {
			t.Errorf("%s: a table scrolls sideways by %v px on a phone", p.path, w[2])
		}
	}
}
