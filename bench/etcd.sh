#!/usr/bin/env bash
# bench/etcd.sh: matchbox on etcd against matchbox on SQLite, in one run:
#
#  1. DHCPv4 leases/s at <= 1 % drops: perfdhcp ramps (as bench/dhcp.sh)
#     against `matchbox serve --dhcp-mode authoritative` with --store
#     etcd://... and with its SQLite store (--db-synchronous FULL), each step
#     on a freshly started server with empty lease storage (a new etcd
#     prefix per step). Every step checks the stored leases: no address and
#     no MAC leased twice, as many bound leases as ACKs.
#  2. /ipxe requests/s at GROUPS groups (one per MAC; wrk rotates over the
#     MACs; the profile's kernel arguments are templates of the group's
#     metadata, as bench/http.sh), one instance on each store, both loaded
#     from the same data directory and checked to answer the same bytes.
#  3. The write -> served-everywhere latency: three instances on the etcd
#     store (the catalog of part 2); WRITES group writes through the first
#     one's API, each polled on all three until served (bench/etcdlat).
#
# The etcd cluster has 3 members, started by the script in the server's
# network namespace, with their data on disk in the work directory (the
# script refuses tmpfs: fsync must cost). etcd runs with --max-txn-ops and
# --max-request-bytes raised so that the data-directory import of GROUPS
# groups fits one transaction (etcd's defaults, 128 operations and
# 1.5 MiB, refuse it), and the /ipxe instances with
# --etcd-request-timeout 120s, within which that transaction commits.
# matchbox is told etcd's --max-txn-ops (--etcd-max-txn-ops), so that its
# lease batches and new machines fill larger transactions. Rounds alternate which store goes first; every
# step and round is printed with the load average, then the medians and
# the ratios etcd/SQLite (goals: >= 0.5 for leases, >= 0.9 for /ipxe;
# within 1 s for the latency).
#
# Usage: bench/etcd.sh [-n ROUNDS] [-a START] [-i STEP] [-x MAX] [-e EXTRA]
#                      [-p SECONDS] [-R CLIENTS] [-G GROUPS] [-D DURATION]
#                      [-C CONNECTIONS] [-W WRITES] [-d DIR] [-k]
#   -n  rounds (default 3)
#   -a  first DHCP target rate, exchanges/s (default 200)
#   -i  DHCP rate step (default 200)
#   -x  highest DHCP target rate (default 20000)
#   -e  DHCP steps run after the first one above 1 % drops (default 1)
#   -p  seconds per DHCP step (default 8)
#   -R  distinct simulated DHCP clients (default 4000000)
#   -G  groups for /ipxe (default 10000)
#   -D  wrk duration per /ipxe measurement (default 10s)
#   -C  wrk connections (default 32)
#   -W  catalog writes for the latency (default 200)
#   -P  the parts to run, of dhcp,ipxe,latency (default all three;
#       latency needs ipxe)
#   -d  parent of the work directory (default /var/tmp); not tmpfs
#   -k  keep the work directory (logs, etcd data)
#
# Environment: MATCHBOX_BIN, a matchbox binary to run instead of building.
# Needs root (namespaces), etcd (etcd-server), etcdctl (etcd-client),
# perfdhcp (kea-admin), wrk, sqlite3, curl, python3, iproute2, go.
set -euo pipefail

ROUNDS=3
START=200
STEP=200
MAX=20000
EXTRA=1
SECONDS_PER=8
CLIENTS=4000000
GROUPS_N=10000
DURATION=10s
CONNECTIONS=32
WRITES=200
PARENT=/var/tmp
KEEP=0
PARTS=dhcp,ipxe,latency
while getopts "n:a:i:x:e:p:R:G:D:C:W:P:d:kh" opt; do
	case $opt in
	n) ROUNDS=$OPTARG ;;
	a) START=$OPTARG ;;
	i) STEP=$OPTARG ;;
	x) MAX=$OPTARG ;;
	e) EXTRA=$OPTARG ;;
	p) SECONDS_PER=$OPTARG ;;
	R) CLIENTS=$OPTARG ;;
	G) GROUPS_N=$OPTARG ;;
	D) DURATION=$OPTARG ;;
	C) CONNECTIONS=$OPTARG ;;
	W) WRITES=$OPTARG ;;
	P) PARTS=$OPTARG ;;
	d) PARENT=$OPTARG ;;
	k) KEEP=1 ;;
	h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init etcd.sh
part() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
if part latency && ! part ipxe; then die "-P: latency needs ipxe"; fi

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
need etcd:etcd-server etcdctl:etcd-client perfdhcp:kea-admin wrk:wrk sqlite3:sqlite3 ip:iproute2 curl:curl python3:python3

bench_workdir "$PARENT" etcd-bench fsync
on_exit 'keep_or_remove "$WORK"'
ID=$$
NS_SRV=mbxe-s-$ID
NS_CLI=mbxe-c-$ID
netns_pair "$NS_SRV" "$NS_CLI" "ve$ID" 10.64.0.1/10 10.64.0.2/10
RANGE_START=10.64.1.0
RANGE_END=10.127.255.250
in_srv() { ip netns exec "$NS_SRV" "$@"; }
# SRV runs a command in the server namespace; started with & it leaves $!
# the command's own pid (ip netns exec and taskset exec it), which in_srv,
# a function and so a subshell when sent to the background, would not.
SRV=(ip netns exec "$NS_SRV")

build_matchbox "$WORK/matchbox"
if [ -n "${MATCHBOX_BIN:-}" ] && [ -z "${ETCDLAT_BIN:-}" ]; then die "with MATCHBOX_BIN, set ETCDLAT_BIN too"; fi
ETCDLAT=${ETCDLAT_BIN:-$WORK/etcdlat}
[ -n "${ETCDLAT_BIN:-}" ] || (cd "$REPO" && go build -o "$ETCDLAT" ./bench/etcdlat)

# The server side gets one core and the load generators the other (as
# bench/http.sh), so that perfdhcp and wrk do not compete with the servers.
PIN_SERVER=() PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c 0) PIN_CLIENT=(taskset -c 1)
fi

# --- etcd: 3 members on the server namespace's loopback, data on disk.
ETCD_PIDS=()
on_exit 'for p in "${ETCD_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done'
ENDPOINTS=""
INITIAL=""
for i in 0 1 2; do
	INITIAL+="${INITIAL:+,}m$i=http://127.0.0.1:$((23800 + i))"
	ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$((23790 + i))"
done
ETCD_MAX_TXN_OPS=$((2 * GROUPS_N + 100))
for i in 0 1 2; do
	"${SRV[@]}" "${PIN_SERVER[@]}" etcd --name "m$i" --data-dir "$WORK/etcd/m$i" \
		--listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
		--listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
		--initial-cluster "$INITIAL" --initial-cluster-state new --initial-cluster-token "bench-$ID" \
		--max-txn-ops "$ETCD_MAX_TXN_OPS" --max-request-bytes $((64 << 20)) --quota-backend-bytes $((8 << 30)) \
		--auto-compaction-mode periodic --auto-compaction-retention 5m \
		--log-level error >"$WORK/etcd-m$i.log" 2>&1 &
	ETCD_PIDS+=($!)
done
ctl() { in_srv env ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" --command-timeout 30s "$@"; }
wait_until 150 0.2 ctl put /bench/ready 1 || { cat "$WORK"/etcd-m*.log >&2; die "etcd did not start"; }
ETCD_URL="etcd://$ENDPOINTS"

SRV_PID=
on_exit 'if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi'
# stop_server: SIGTERM, and SIGKILL (said, and counted in STUCK) when the
# server has not exited 30 s later.
STUCK=0
stop_server() {
	local i
	kill "$SRV_PID" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SRV_PID" 2>/dev/null; then
		log "warning: matchbox (pid $SRV_PID) still running 30s after SIGTERM: goroutine dump in its log, then SIGKILL"
		kill -QUIT "$SRV_PID" 2>/dev/null || true
		sleep 1
		kill -KILL "$SRV_PID" 2>/dev/null || true
		# The work directory goes at the end: keep the dump.
		cp "$SRV_LOG" "/tmp/etcd-bench-stuck-$SRV_PID.log" 2>/dev/null &&
			log "its log and goroutine dump: /tmp/etcd-bench-stuck-$SRV_PID.log"
		STUCK=$((STUCK + 1))
	fi
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}

# ---------------------------------------------------------------- DHCP
# start_dhcp STORE DIR PREFIX: a fresh DHCP server on STORE (sqlite or
# etcd) with empty lease storage.
start_dhcp() {
	local st=$1 dir=$2 pfx=$3 store=()
	mkdir -p "$dir"
	if [ "$st" = etcd ]; then store=(--store "$ETCD_URL/$pfx" --etcd-max-txn-ops "$ETCD_MAX_TXN_OPS"); else store=(--db-synchronous FULL); fi
	"${SRV[@]}" "${PIN_SERVER[@]}" "$MBX" serve --data-dir "$dir" --http-addr 127.0.0.1:18080 --log-level warn "${store[@]}" \
		--dhcp-mode authoritative --dhcp-iface vS --dhcp-range "$RANGE_START-$RANGE_END" \
		--dhcp-lease-time 1h --boot-url http://10.64.0.1:18080 >"$dir/matchbox.log" 2>&1 &
	SRV_PID=$! SRV_LOG=$dir/matchbox.log
	wait_until 150 0.1 udp_listening "$NS_SRV" 67 || { cat "$dir/matchbox.log" >&2; die "matchbox on $st did not start"; }
}

achieved() { awk '/^Rate:/ {print int($2); exit}' "$1"; }
drop_pct() {
	awk '/Statistics for: DISCOVER-OFFER/ {s=1} /Statistics for: REQUEST-ACK/ {s=2}
		s==1 && /sent packets:/ {d=$3} s==2 && /received packets:/ {a=$3}
		END {if (d > 0) printf "%.2f", 100 * (1 - a / d); else print "100"}' "$1"
}
acks() { awk '/Statistics for: REQUEST-ACK/ {s=1} s && /received packets:/ {print $3; exit}' "$1"; }
requests() { awk '/Statistics for: REQUEST-ACK/ {s=1} s && /sent packets:/ {print $3; exit}' "$1"; }

# check_leases STORE DIR PREFIX PERF: sets L_OUT to "LEASES/ACKS"; fails
# the run when an address or MAC is leased twice or the count is off.
FAIL=0
check_leases() {
	local st=$1 dir=$2 pfx=$3 perf=$4 n dip dmac a r low
	if [ "$st" = sqlite ]; then
		read -r n dip dmac <<<"$(sqlite3 -separator ' ' "$dir/matchbox.db" \
			"SELECT count(*), count(DISTINCT ip), count(DISTINCT mac) FROM leases WHERE state = 'bound'")"
	else
		# One key per address; the MACs of the bound leases must differ.
		local try
		for try in 1 2 3 4; do
			ctl get --prefix "/$pfx/leases/" --print-value-only >"$dir/leases.json" && break
			[ "$try" -lt 4 ] || die "etcdctl get /$pfx/leases/ failed 4 times"
			sleep 2
		done
		{ grep '"state":"bound"' "$dir/leases.json" || true; } >"$dir/bound.json"
		n=$(wc -l <"$dir/bound.json")
		dip=$n
		dmac=$({ grep -o '"mac":"[^"]*"' "$dir/bound.json" || true; } | sort -u | wc -l)
	fi
	a=$(acks "$perf")
	r=$(requests "$perf")
	low=$(awk -v a="$a" -v c="$CLIENTS" 'BEGIN {printf "%d", a - 3 * a * a / (2 * c) - 10}')
	L_OUT="$n/$a"
	if [ "$n" != "$dip" ] || [ "$n" != "$dmac" ]; then
		log "FAIL: $st: an address or a MAC is leased twice ($n leases, $dip addresses, $dmac MACs) in $dir"
		FAIL=1
	fi
	if [ "$n" -lt "$low" ] || [ "$n" -gt "$r" ]; then
		log "FAIL: $st: $n leases stored for $a ACKs received and $r REQUESTs sent (want $low..$r) in $dir"
		FAIL=1
	fi
}

# step STORE ROUND RATE: one step of the ramp; sets S_RATE and S_DROP.
step() {
	local st=$1 round=$2 rate=$3 dir=$WORK/dhcp-$1-r$2-$3 pfx=dhcp-r$2-$3 perf
	perf=$dir.perf
	start_dhcp "$st" "$dir" "$pfx"
	ip netns exec "$NS_CLI" "${PIN_CLIENT[@]}" perfdhcp -4 -l vC -r "$rate" -R "$CLIENTS" -p "$SECONDS_PER" -W 1000000 \
		>"$perf" 2>&1 || true # perfdhcp exits 3 when packets were dropped
	stop_server
	S_RATE=$(achieved "$perf")
	[ -n "$S_RATE" ] || { cat "$perf" >&2; die "$st: no rate in perfdhcp's report $perf"; }
	S_DROP=$(drop_pct "$perf")
	check_leases "$st" "$dir" "$pfx" "$perf"
	printf 'round %s dhcp %-6s target %6s/s achieved %6s/s drops %6s%%  leases/ACKs %s  (load average %s)\n' \
		"$round" "$st" "$rate" "$S_RATE" "$S_DROP" "$L_OUT" "$(loadavg)"
	if [ "$st" = etcd ]; then ctl del --prefix "/$pfx/" >/dev/null || log "warning: could not delete /$pfx/ (left in etcd)"; fi
	[ "$KEEP" = 1 ] || rm -rf "$dir" "$perf"
}

# ramp STORE ROUND: steps up until drops pass 1 %; appends the best rate
# at <= 1 % drops and the saturation to $WORK/dhcp-STORE.results.
ramp() { bench_ramp "$1" "$2" "$WORK/dhcp-$1.results" "dhcp $(printf '%-6s' "$1")"; }

echo "etcd.sh: $(date -u +%FT%TZ), load average at start: $(loadavg), $(nproc) cores; $(etcd --version | head -1), 3 members"
echo "work directory $WORK on $BENCH_FSTYPE; $ROUNDS rounds; DHCP ramp $START..$MAX/s step $STEP, ${SECONDS_PER}s per step; /ipxe at $GROUPS_N groups, wrk $DURATION x $CONNECTIONS connections; $WRITES writes for the latency; pinned ${PIN_SERVER[*]:-no}"
if part dhcp; then
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then order="etcd sqlite"; else order="sqlite etcd"; fi
		for s in $order; do ramp "$s" "$r"; done
	done
fi

# ---------------------------------------------------------------- /ipxe
if part ipxe; then
DATA=$WORK/data
mkdir -p "$DATA/profiles" "$DATA/groups"
cat >"$DATA/profiles/node.yaml" <<'YAML'
id: node
boot:
  kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz
  initrd: [/assets/flatcar/flatcar_production_pxe_image.cpio.gz]
  args: [initrd=flatcar_production_pxe_image.cpio.gz, "flatcar.config.url=http://matchbox:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}", flatcar.first_boot=yes, "hostname={{.hostname}}", "rack={{.rack}}", console=ttyS0]
YAML
python3 - "$DATA/groups" "$GROUPS_N" "$WORK/macs.txt" <<'PY'
import sys, os
d, n, macs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(macs, "w") as out:
    for i in range(n):
        mac = "02:00:00:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        with open(os.path.join(d, "g%05d.json" % i), "w") as f:
            f.write('{"id":"g%05d","profile":"node","selector":{"mac":"%s"},"metadata":{"hostname":"node-%05d.example.com","rack":"r%02d"}}' % (i, mac, i, i % 40))
        out.write(mac.replace(":", "-") + "\n")
PY
HTTP_PIDS=()
on_exit 'for p in "${HTTP_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done'
# serve_http NAME PORT STORE-ARGS...: an instance on the /ipxe catalog.
serve_http() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$WORK/$name"
	"${SRV[@]}" "${PIN_SERVER[@]}" "$MBX" serve --data-dir "$DATA" --assets-dir - --http-addr "127.0.0.1:$port" \
		--import-source bench --log-level warn "$@" >"$WORK/$name/matchbox.log" 2>&1 &
	HTTP_PIDS+=($!)
	wait_until 600 0.1 in_srv curl -fs "http://127.0.0.1:$port/ipxe?mac=$(tail -1 "$WORK/macs.txt")" ||
		{ cat "$WORK/$name/matchbox.log" >&2; die "matchbox $name did not serve /ipxe"; }
}
t0=$(date +%s.%N)
serve_http sqlite 18081 --db "$WORK/sqlite/matchbox.db"
t1=$(date +%s.%N)
serve_http etcd 18082 --store "$ETCD_URL/ipxe" --etcd-request-timeout 120s --etcd-max-txn-ops "$ETCD_MAX_TXN_OPS"
t2=$(date +%s.%N)
printf '%s groups imported and served: SQLite instance after %.1fs, etcd instance after %.1fs\n' "$GROUPS_N" \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$(awk -v a="$t1" -v b="$t2" 'BEGIN {print b - a}')"
# Every MAC once on each instance, before measuring: the first request of
# a MAC creates its machine (a store write); the rounds measure the boots
# after it, which read only the in-memory snapshot. This pass is timed too.
first_boots() {
	in_srv python3 - "$1" "$WORK/macs.txt" <<'PY'
import sys, time, http.client, concurrent.futures
port, macs = int(sys.argv[1]), open(sys.argv[2]).read().split()
def fetch(part):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for mac in part:
        c.request("GET", "/ipxe?mac=" + mac)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit("port %d answered %d to /ipxe?mac=%s: %s" % (port, r.status, mac, body[:200]))
start = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    list(ex.map(fetch, [macs[i::16] for i in range(16)]))
print("%.0f" % (len(macs) / (time.time() - start)))
PY
}
FB_S=$(first_boots 18081) || die "first boots on the SQLite instance failed"
FB_E=$(first_boots 18082) || die "first boots on the etcd instance failed"
echo "first boot of each of $GROUPS_N MACs (creates its machine), 16 clients: etcd $FB_E req/s, sqlite $FB_S req/s, ratio $(awk -v e="$FB_E" -v s="$FB_S" 'BEGIN {printf "%.2f", e / s}') (load average $(loadavg))"
for mac in "$(head -1 "$WORK/macs.txt")" "$(sed -n "$((GROUPS_N / 2 + 1))p" "$WORK/macs.txt")" "$(tail -1 "$WORK/macs.txt")"; do
	cmp -s <(in_srv curl -fs "http://127.0.0.1:18081/ipxe?mac=$mac") <(in_srv curl -fs "http://127.0.0.1:18082/ipxe?mac=$mac") ||
		die "the SQLite and etcd instances answer /ipxe?mac=$mac differently"
done
cat >"$WORK/rotate.lua" <<LUA
local macs = {}
for line in io.lines("$WORK/macs.txt") do macs[#macs + 1] = line end
local i = 0
local thread_id = 0
setup = function(thread) thread:set("offset", thread_id * 7919); thread_id = thread_id + 1 end
request = function()
  i = i + 1
  return wrk.format("GET", "/ipxe?mac=" .. macs[((i + (offset or 0)) % #macs) + 1])
end
LUA
# ipxe_rate PORT: requests/s; fails on a non-2xx answer or a socket error.
ipxe_rate() {
	bench_wrk_rate in_srv "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/rotate.lua" "http://127.0.0.1:$1" ||
		{ log "/ipxe on port $1 answered with errors"; return 1; }
}
for p in 18081 18082; do in_srv wrk -t1 -c4 -d2s -s "$WORK/rotate.lua" "http://127.0.0.1:$p" >/dev/null; done # warm up
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		e=$(ipxe_rate 18082); s=$(ipxe_rate 18081); order="etcd first"
	else
		s=$(ipxe_rate 18081); e=$(ipxe_rate 18082); order="sqlite first"
	fi
	echo "$e $s" >>"$WORK/ipxe.results"
	printf 'round %d /ipxe etcd %10.0f req/s  sqlite %10.0f req/s  ratio %.2f  (%s; load average %s)\n' \
		"$r" "$e" "$s" "$(awk -v e="$e" -v s="$s" 'BEGIN {print e / s}')" "$order" "$(loadavg)"
done
kill "${HTTP_PIDS[0]}" 2>/dev/null || true # the SQLite instance is done

fi
# ---------------------------------------------------------------- latency
if part latency; then
serve_http etcd-b 18083 --store "$ETCD_URL/ipxe" --etcd-request-timeout 120s --etcd-max-txn-ops "$ETCD_MAX_TXN_OPS"
serve_http etcd-c 18084 --store "$ETCD_URL/ipxe" --etcd-request-timeout 120s --etcd-max-txn-ops "$ETCD_MAX_TXN_OPS"
echo "write -> served everywhere, load average $(loadavg):"
in_srv "$ETCDLAT" -write http://127.0.0.1:18082 -serve http://127.0.0.1:18082,http://127.0.0.1:18083,http://127.0.0.1:18084 \
	-profile node -n "$WRITES" | tee "$WORK/latency.txt" || die "latency measurement failed"

fi
# ---------------------------------------------------------------- summary
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v m="$1" -v k="$2" 'BEGIN {printf "%.2f", (k > 0 ? m / k : 0)}'; }
printf '\nmedians of %s rounds            etcd        sqlite   ratio  goal\n' "$ROUNDS"
if part dhcp; then
	E_BEST=$(awk '{print $1}' "$WORK/dhcp-etcd.results" | median)
	S_BEST=$(awk '{print $1}' "$WORK/dhcp-sqlite.results" | median)
	E_SAT=$(awk '{print $2}' "$WORK/dhcp-etcd.results" | median)
	S_SAT=$(awk '{print $2}' "$WORK/dhcp-sqlite.results" | median)
	LEASE_RATIO=$(ratio "$E_BEST" "$S_BEST")
	[ "$S_BEST" -gt 0 ] || LEASE_RATIO=n/a
	printf '%-30s %8s/s %10s/s %7s  >= 0.5\n' "DHCP leases at <= 1% drops" "$E_BEST" "$S_BEST" "$LEASE_RATIO"
	printf '%-30s %8s/s %10s/s %7s\n' "DHCP saturation" "$E_SAT" "$S_SAT" "$(ratio "$E_SAT" "$S_SAT")"
fi
if part ipxe; then
	E_IPXE=$(awk '{print int($1)}' "$WORK/ipxe.results" | median)
	S_IPXE=$(awk '{print int($2)}' "$WORK/ipxe.results" | median)
	IPXE_RATIO=$(awk '{print $1 / $2}' "$WORK/ipxe.results" | sort -n | awk '{v[NR] = $1} END {printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
	printf '%-30s %8s/s %10s/s %7s  >= 0.9 (median of the rounds'"'"' ratios)\n' "/ipxe at $GROUPS_N groups" "$E_IPXE" "$S_IPXE" "$IPXE_RATIO"
fi
if part latency; then
	grep 'served everywhere' "$WORK/latency.txt" | sed 's/^/write /; s/$/  (goal: within 1s)/'
fi
if part dhcp; then
	echo "per round (leases at <= 1 %, saturation): etcd $(tr '\n' ';' <"$WORK/dhcp-etcd.results") sqlite $(tr '\n' ';' <"$WORK/dhcp-sqlite.results")"
fi
echo "load average at end: $(loadavg)"
[ "$STUCK" = 0 ] || echo "DHCP servers that did not exit within 30s of SIGTERM: $STUCK"
exit $FAIL
