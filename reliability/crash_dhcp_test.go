package reliability

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// udhcpcScript records every address udhcpc is ACKed, as "MAC IP", in
// $ACKLOG; it configures nothing.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew) echo "$(cat /sys/class/net/$interface/address) $ip" >> "$ACKLOG" ;;
esac
exit 0
`

// TestCrashDHCP kills matchbox with SIGKILL at random moments while busybox
// udhcpc clients in a network namespace churn through leases (new MACs
// and known ones), each recording every address it was ACKed. After each
// kill: SQLite's integrity_check is ok, every MAC's last ACKed address is
// stored as its bound lease, no address is stored for two MACs, no MAC
// holds two stored leases, and no address was ever ACKed to two MACs.
func TestCrashDHCP(t *testing.T) {
	needBinaries(t)
	needRoot(t, "busybox", "sqlite3")
	nKills := kills(5, 50)
	nClients := 6
	l := newLab(t, nClients)
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	ackLog := filepath.Join(dir, "acks")
	srv := newServer(t, l.srv, dir, "0.0.0.0:8080",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "br0", "--dhcp-range", dhcpRange,
		"--dhcp-lease-time", "1h", "--boot-url", "http://"+serverIP+":8080")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, iface := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			churn(ctx, t, l.cli, iface, byte(i), script, ackLog)
		}()
	}

	totalChecked := 0
	for k := range nKills {
		srv.start()
		// A client whose DISCOVER went unanswered while the server was
		// down resends only after udhcpc's shortest timeout (1s): lives
		// shorter than that see almost no ACKs.
		time.Sleep(randomDelay(1*time.Second, 4*time.Second))
		srv.kill9()
		integrityOK(t, srv.db)
		stored := storedLeases(t, srv.db)
		acks := readAcks(t, ackLog)
		totalChecked += checkLeases(t, k, stored, acks)
		if t.Failed() {
			t.Logf("server log: %s", srv.tail())
			return
		}
	}
	acks := readAcks(t, ackLog)
	t.Logf("%d kills survived; %d ACKs recorded by udhcpc (%d MACs); %d lease checks", nKills, len(acks.all), len(acks.last), totalChecked)
	if len(acks.all) < 2*nKills {
		t.Errorf("only %d ACKs in %d restarts: the clients did not churn", len(acks.all), nKills)
	}
}

// churn runs udhcpc on iface until ctx ends, obtaining a lease and
// quitting each time, half the time with a new MAC.
func churn(ctx context.Context, t *testing.T, ns, iface string, id byte, script, ackLog string) {
	n := 0
	mac := func() string {
		n++
		return net.HardwareAddr{0x02, 0x77, id, byte(n >> 16), byte(n >> 8), byte(n)}.String()
	}
	setMAC := func(m string) {
		exec.Command("ip", "-n", ns, "link", "set", iface, "down").Run()
		exec.Command("ip", "-n", ns, "link", "set", iface, "address", m).Run()
		exec.Command("ip", "-n", ns, "link", "set", iface, "up").Run()
	}
	setMAC(mac())
	for ctx.Err() == nil {
		if rand.IntN(2) == 0 {
			setMAC(mac())
		}
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", iface, "-n", "-q", "-f", "-t", "2", "-T", "1", "-A", "1", "-s", script)
		cmd.Env = append(os.Environ(), "ACKLOG="+ackLog)
		cmd.Run() // fails while the server is down
	}
}

type lease struct{ mac, ip, state string }

// storedLeases reads the leases table.
func storedLeases(t *testing.T, db string) []lease {
	var out []lease
	for _, row := range sqlite(t, db, "SELECT mac || '|' || ip || '|' || state FROM leases;") {
		f := strings.Split(row, "|")
		if len(f) != 3 {
			t.Fatalf("lease row %q", row)
		}
		out = append(out, lease{f[0], f[1], f[2]})
	}
	return out
}

// acks are the ACKs the clients recorded: every one in order and the last
// address per MAC.
type acks struct {
	all  [][2]string
	last map[string]string
}

func readAcks(t *testing.T, path string) acks {
	a := acks{last: map[string]string{}}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return a
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 2 {
			continue // a line cut by a kill of the client: not an ACK record
		}
		a.all = append(a.all, [2]string{fs[0], fs[1]})
		a.last[fs[0]] = fs[1]
	}
	return a
}

// checkLeases compares the stored leases after kill k with the ACKs
// recorded so far and returns how many ACKed leases it checked.
func checkLeases(t *testing.T, k int, stored []lease, a acks) int {
	t.Helper()
	byIP, byMAC := map[string]string{}, map[string]string{}
	for _, l := range stored {
		if prev, ok := byIP[l.ip]; ok {
			t.Errorf("after kill %d: address %s stored for %s and %s", k, l.ip, prev, l.mac)
		}
		byIP[l.ip] = l.mac
		if l.state == "declined" {
			continue
		}
		if prev, ok := byMAC[l.mac]; ok {
			t.Errorf("after kill %d: MAC %s holds %s and %s", k, l.mac, prev, l.ip)
		}
		byMAC[l.mac] = l.ip
	}
	ackedTo := map[string]string{}
	for _, ack := range a.all {
		if prev, ok := ackedTo[ack[1]]; ok && prev != ack[0] {
			t.Errorf("address %s was ACKed to %s and to %s", ack[1], prev, ack[0])
		}
		ackedTo[ack[1]] = ack[0]
	}
	states := map[string]string{}
	for _, l := range stored {
		states[l.ip] = l.state
	}
	for mac, ip := range a.last {
		if got, ok := byMAC[mac]; !ok || got != ip {
			t.Errorf("after kill %d: %s was ACKed %s, the store has %q for it", k, mac, ip, got)
		} else if states[ip] != "bound" {
			t.Errorf("after kill %d: %s's lease on %s is %s, want bound", k, mac, ip, states[ip])
		}
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kill %d: %d leases stored, %d ACKs, %d MACs checked\n", k, len(stored), len(a.all), len(a.last))
	}
	return len(a.last)
}
