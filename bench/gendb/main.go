// Command gendb writes a matchbox database and data directory at fleet
// scale, for bench/startup.sh: machines discovered by boot events (each with
// a one-event timeline), bound DHCP leases, and groups (one per machine MAC,
// with metadata) as files of the data directory that serve imports.
//
//	go run ./bench/gendb -db DIR/matchbox.db -data-dir DIR/data -machines 100000 -leases 100000 -groups 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"matchbox/dhcp"
	"matchbox/matchbox"
	"matchbox/store"
)

func main() {
	dbPath := flag.String("db", "", "database file to create")
	dataDir := flag.String("data-dir", "", "data directory to create (profiles/, groups/, ignition/)")
	machines := flag.Int("machines", 100000, "machines to create")
	leases := flag.Int("leases", 100000, "DHCP leases to create")
	groups := flag.Int("groups", 10000, "groups to create")
	flag.Parse()
	if *dbPath == "" || *dataDir == "" {
		fmt.Fprintln(os.Stderr, "gendb: -db and -data-dir are required")
		os.Exit(2)
	}
	if err := run(context.Background(), *dbPath, *dataDir, *machines, *leases, *groups); err != nil {
		fmt.Fprintln(os.Stderr, "gendb:", err)
		os.Exit(1)
	}
}

// mac returns the i-th machine's MAC.
func mac(i int) string {
	return fmt.Sprintf("02:10:%02x:%02x:%02x:%02x", i>>24&255, i>>16&255, i>>8&255, i&255)
}

func run(ctx context.Context, dbPath, dataDir string, machines, leases, groups int) error {
	if err := writeDataDir(dataDir, groups); err != nil {
		return err
	}
	s, err := store.Open(ctx, store.Config{Path: dbPath, Synchronous: "NORMAL", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("open %s: %w", dbPath, err)
	}
	defer s.Close()
	const batch = 2000
	for i := 0; i < machines; i += batch {
		evs := make([]matchbox.BootEvent, 0, batch)
		for j := i; j < min(i+batch, machines); j++ {
			evs = append(evs, matchbox.BootEvent{MAC: mac(j), Type: matchbox.EventIPXE, Outcome: matchbox.Outcome{Status: 200, Group: fmt.Sprintf("g%05d", j%max(groups, 1)), Profile: "node"}})
		}
		if err := s.DiscoverAndAppendEvents(ctx, evs); err != nil {
			return fmt.Errorf("machines %d-%d: %w", i, i+len(evs)-1, err)
		}
	}
	expires := time.Now().Add(24 * time.Hour)
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := 0; i < leases; i += batch {
		ws := make([]dhcp.LeaseWrite, 0, batch)
		for j := i; j < min(i+batch, leases); j++ {
			n := uint32(j) + 10
			ip := netip.AddrFrom4([4]byte{base[0], byte(n >> 16), byte(n >> 8), byte(n)})
			ws = append(ws, dhcp.LeaseWrite{Lease: dhcp.Lease{IP: ip, MAC: mac(j), Hostname: fmt.Sprintf("node-%06d", j), Expires: expires, State: dhcp.LeaseBound}})
		}
		if err := s.CommitLeases(ctx, ws); err != nil {
			return fmt.Errorf("leases %d-%d: %w", i, i+len(ws)-1, err)
		}
	}
	return nil
}

// writeDataDir writes a profile with templated kernel arguments, a Butane
// template and groups groups, one per machine MAC.
func writeDataDir(dir string, groups int) error {
	for _, sub := range []string{"profiles", "groups", "ignition"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"profiles/node.yaml": `id: node
boot:
  kernel: /assets/vmlinuz
  initrd: [/assets/initrd.img]
  args: ["hostname={{.hostname}}", "rack={{.rack}}", console=ttyS0]
ignition_id: node.yaml
`,
		"ignition/node.yaml": `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: {{.hostname}}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for i := 0; i < groups; i++ {
		g := fmt.Sprintf(`{"id":"g%05d","profile":"node","selector":{"mac":"%s"},"metadata":{"hostname":"node-%06d","rack":"r%02d"}}`, i, mac(i), i, i%40)
		if err := os.WriteFile(filepath.Join(dir, "groups", fmt.Sprintf("g%05d.json", i)), []byte(g), 0o644); err != nil {
			return err
		}
	}
	return nil
}
