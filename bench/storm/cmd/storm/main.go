// Command storm simulates many machines network-booting at once (DHCP,
// TFTP, HTTP) against a provisioning server and reports latencies per
// stage. Run it as root in a network namespace joined to the server's by a
// veth pair:
//
//	ip netns exec CLIENT storm -n 1000 -iface vC -tftp 10.9.0.1:69 -http http://10.9.0.1:8080
//
// It exits 1 when a machine failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"matchbox/bench/storm"
)

func main() {
	var cfg storm.Config
	flag.IntVar(&cfg.Machines, "n", 100, "simulated machines")
	flag.IntVar(&cfg.Concurrency, "c", 0, "machines booting at once (default: all)")
	flag.StringVar(&cfg.Interface, "iface", "", "interface for DHCP (raw socket; empty skips DHCP)")
	flag.DurationVar(&cfg.DHCPTimeout, "dhcp-timeout", 0, "wait for the first DHCP answer before resending, doubled at each try (default 2s)")
	flag.StringVar(&cfg.TFTPAddr, "tftp", "", "TFTP server host:port (empty skips TFTP)")
	flag.StringVar(&cfg.TFTPFile, "tftp-file", "", "file fetched when DHCP names none (default undionly.kpxe)")
	flag.StringVar(&cfg.HTTPBase, "http", "", "HTTP base URL http://host:port (empty skips HTTP)")
	flag.StringVar(&cfg.ConfigPath, "config-path", "", "config fetched last, {mac} replaced (default /ignition?mac={mac}; - skips)")
	flag.DurationVar(&cfg.StageTimeout, "stage-timeout", 0, "bound of each TFTP and HTTP stage (default 60s)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := storm.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(2)
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(rep)
	} else {
		fmt.Print(rep)
	}
	if rep.Failed > 0 {
		os.Exit(1)
	}
}
