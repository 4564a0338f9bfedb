package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(90)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".jpg"), png, 0o644)
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
		chromedp.WaitVisible(css(`table.fleet`)),
		shot("fleet")))
	if rows := eval(tab, `[...document.querySelectorAll('table.fleet tbody td:first-child a')].map(a => a.textContent).join(",")`); rows != "node1,node3" {
		t.Fatalf("fleet filtered by memory.bytes >= 64GiB: %v, want node1,node3", rows)
	}
	must(chromedp.Do(tab,
		chromedp.Click(css(`a[href="/ui/machines/node3"]`)),
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
		chromedp.Click(css(`#provision`)), chromedp.WaitVisible(css(`p.notice`))))
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

	// The other pages, and the fleet on a phone.
	must(chromedp.Do(tab,
		chromedp.Navigate(c.srv.URL+"/ui/groups"), chromedp.WaitVisible(css(`h1`)), shot("groups"),
		chromedp.Navigate(c.srv.URL+"/ui/events"), chromedp.WaitVisible(css(`#events`)), shot("events"),
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(c.srv.URL+"/ui/"), chromedp.WaitVisible(css(`table.fleet`)), shot("fleet-phone"),
	))
}
