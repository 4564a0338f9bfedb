package e2elibvirt

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// installVMs are the install scenario's machines: one whose installed
// system calls its completion callback, one whose install "fails" (its
// boot never calls back).
var installVMs = []vmSpec{
	{Name: "install-ok", Firmware: firmwareBIOS, NIC: "virtio"},
	{Name: "install-fails", Firmware: firmwareBIOS, NIC: "virtio"},
}

// installTimeout is the failing profile's provisioning_timeout: longer
// than a boot (about 10–20 s under TCG, over 60 s on a loaded machine),
// short enough to wait for.
const installTimeout = 2 * time.Minute

// writeInstallDataDir writes the install scenario's data directory: per
// VM a profile booting the test OS, which fetches its Ignition config (the
// installer's config fetch) and then its matchbox.done URL: the completion
// callback {{.provisioned_url}} for install-ok, a generic template for
// install-fails (an install that never reports).
func writeInstallDataDir(t testing.TB, dir, base string, specs []vmSpec) {
	t.Helper()
	for _, s := range specs {
		args := bootArgs(base)
		// The machine that calls back gets a deadline it cannot reach
		// even on a loaded machine: only the failing one is timed.
		done, timeout := "matchbox.done={{.provisioned_url}}", 10*time.Minute
		if s.Name == "install-fails" {
			done, timeout = "matchbox.done="+base+"/generic?mac=${mac:hexhyp}&step=done", installTimeout
		}
		for i, a := range args {
			if strings.HasPrefix(a, "matchbox.done=") {
				args[i] = done
			}
		}
		writeJSON(t, filepath.Join(dir, "profiles", s.Name+".json"), map[string]any{
			"id":                   s.Name,
			"ignition_id":          "testos.yaml",
			"generic_id":           "done.txt",
			"provisioning_timeout": timeout.String(),
			"boot": map[string]any{
				"kernel": "/assets/testos/vmlinuz",
				"initrd": []string{"/assets/testos/initramfs.cpio.gz"},
				"args":   args,
			},
		})
		writeJSON(t, filepath.Join(dir, "groups", s.Name+".json"), map[string]any{
			"id": s.Name, "profile": s.Name,
			"selector": map[string]string{"mac": s.MAC},
			"metadata": map[string]any{"hostname": s.Name, "role": "install"},
		})
	}
	mustWrite(t, filepath.Join(dir, "ignition", "testos.yaml"), ignitionTemplate)
	mustWrite(t, filepath.Join(dir, "generic", "done.txt"), genericDone)
}

// TestInstallCallback is the two-stage install flow with the completion
// callback: machines provisioned through their BMCs boot the installer
// and fetch their config; only the one whose installed system calls its
// provisioned_url becomes provisioned (after the call). The other stays
// provisioning, becomes failed after its profile's deadline (reason on
// its timeline and in /metrics), and boots the installer again on its
// next network boot.
func TestInstallCallback(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	specs := withMACs(7, installVMs)
	dataDir := filepath.Join(l.Dir, "data")
	writeInstallDataDir(t, dataDir, bootBase, specs)
	_, help := buildMatchbox(t)
	dns := dnsmasqOptions{}
	if !hasTFTP(help) {
		dns.TFTPRoot = tftpRoot
	}
	l.startDnsmasq(t, "dnsmasq-ra", dns)
	keyFile := filepath.Join(l.Dir, "secret.key")
	mustWrite(t, keyFile, strings.Repeat("5a", 32)+"\n")
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "authoritative",
		ExtraArgs: []string{"--secret-key-file", keyFile, "--bmc-timeout", "20s", "--provisioning-check-interval", "2s"}})
	ctx := context.Background()
	for i, spec := range specs {
		m := l.Driver.Define(t, spec)
		// matchbox drives the BMC: it listens on the namespace's loopback.
		b := startBMCIn(t, l, m, l.NS, 6240+i)
		id := spec.Name
		if err := srv.apiCall(ctx, http.MethodPost, "/api/v1/machines", map[string]any{"id": id, "macs": []string{spec.MAC}}, nil); err != nil {
			t.Fatalf("create machine %s: %v", id, err)
		}
		if err := srv.SetBMC(ctx, id, b); err != nil {
			t.Fatalf("declare BMC of %s: %v", id, err)
		}
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			state := func() string {
				mr, err := srv.MachineByID(ctx, id)
				if err != nil {
					t.Fatalf("machine %s: %v", id, err)
				}
				return string(mr.State)
			}
			provisioned := time.Now()
			boot := func(powerOn func(context.Context) error) {
				bootVM(ctx, t, m, spec.Name, powerOn)
			}
			boot(func(ctx context.Context) error {
				_, err := srv.Provision(ctx, id)
				return err
			})
			evs, err := srv.EventsByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ign := lastOf(evs, "http.ignition")
			if ign < 0 {
				t.Fatalf("no config fetch on the timeline: %s", eventTypes(evs))
			}
			if spec.Name == "install-ok" {
				p := lastOf(evs, "machine.provisioned")
				if st := state(); st != "provisioned" || p < ign || evs[p].Detail["via"] != "callback" {
					t.Fatalf("state %s; want provisioned by the callback after the config fetch: %s", st, eventTypes(evs))
				}
				t.Logf("provisioned %.1fs after provisioning started, %.1fs after the config fetch",
					evs[p].At.Sub(provisioned).Seconds(), evs[p].At.Sub(evs[ign].At).Seconds())
				return
			}
			// The install never called back: fetching the config did not
			// provision it.
			if st := state(); st != "provisioning" {
				t.Fatalf("after its boot: state %s, want provisioning: %s", st, eventTypes(evs))
			}
			deadline := time.Now().Add(installTimeout + 30*time.Second)
			for state() != "failed" {
				if time.Now().After(deadline) {
					t.Fatalf("still %s %s after provisioning started (timeout %s)", state(), time.Since(provisioned).Round(time.Second), installTimeout)
				}
				time.Sleep(time.Second)
			}
			failedAfter := time.Since(provisioned)
			evs, _ = srv.EventsByID(ctx, id)
			f := lastOf(evs, "machine.failed")
			if f < 0 || evs[f].Detail["reason"] != "provisioning_timeout" {
				t.Fatalf("timeline lacks machine.failed with reason provisioning_timeout: %s", eventTypes(evs))
			}
			t.Logf("failed %.1fs after provisioning started (timeout %s)", failedAfter.Seconds(), installTimeout)
			if got := metricLine(t, srv, `matchbox_machine_failures_total{reason="provisioning_timeout"}`); got != "1" {
				t.Errorf("/metrics: failures by timeout %q, want 1", got)
			}
			// Its next network boot runs the installer again.
			// Events written since: the greatest id so far.
			var lastID int64
			for _, e := range evs {
				lastID = max(lastID, e.ID)
			}
			boot(func(ctx context.Context) error {
				_, err := srv.Power(ctx, id, "on")
				return err
			})
			evs, _ = srv.EventsByID(ctx, id)
			var since []event
			for _, e := range evs {
				if e.ID > lastID {
					since = append(since, e)
				}
			}
			again := false
			for _, e := range since {
				if e.Type == "http.ipxe" && e.Detail["profile"] == spec.Name {
					again = true
				}
				if e.Type == "http.ipxe.boot_disk" {
					t.Fatalf("failed machine was told to boot from disk: %s", eventTypes(since))
				}
			}
			if !again {
				t.Fatalf("failed machine's next boot did not get the installer: %s", eventTypes(since))
			}
		})
	}
}

// metricLine returns the value of the /metrics sample named by its name
// and labels, "" when absent.
func metricLine(t *testing.T, s *matchboxServer, sample string) string {
	t.Helper()
	resp, err := s.client.Get(s.BootBase + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}
