#!/usr/bin/env bash
# bench/dhcp.sh: DHCPv4 lease throughput of matchbox (authoritative mode)
# against ISC Kea, side by side in one run, with ISC perfdhcp as the client.
#
# Two network namespaces joined by a veth pair: the server side holds
# 10.64.0.1/10, the client side 10.64.0.2/10. matchbox (`matchbox serve
# --dhcp-mode authoritative`, SQLite leases, --db-synchronous FULL) and
# kea-dhcp4 (memfile leases persisted to a CSV file, multi-threaded by
# default: its faster configuration here) serve 10.64.1.0-10.127.255.250
# (about 4 million addresses, so that no step runs out) in the server
# namespace.
#
# A round ramps each server: perfdhcp runs 4-way exchanges (DISCOVER, OFFER,
# REQUEST, ACK) at a target rate for a few seconds against a freshly started
# server with empty lease storage, and the target steps up until more than
# 1 % of the exchanges are dropped (then EXTRA steps more, to see where it
# saturates). perfdhcp waits 1 s after its last request (-W, its drop
# time), so that the exchanges still in flight when sending stops are
# counted as answered or lost, not as lost. Rounds alternate which server
# ramps first. Every step is printed; the summary gives, per server, the median over the rounds of the
# highest achieved rate at <= 1 % drops and of the highest achieved rate at
# all (saturation), and the ratios matchbox/Kea.
#
# After every step the lease storage is checked: every address and every
# MAC leased once, and as many leases as acknowledged exchanges (perfdhcp
# draws each exchange's MAC at random among CLIENTS, so a few MACs repeat:
# the check allows three times the expected repeats, and no more leases
# than REQUESTs sent). For matchbox it also reports the boot events its
# recorder dropped (matchbox_events_dropped_total) and the machines it
# created. For both servers it reports the datagrams the kernel dropped for
# a full socket receive buffer in each namespace (the server's, and
# perfdhcp's, where replies arriving faster than perfdhcp reads them are
# lost and counted as drops of the server). The work directory must
# be on a real disk: the script refuses tmpfs, where fsync costs nothing.
#
# Each server runs in a cgroup of its own (cgroup v1 cpuacct or v2), which
# counts the CPU of all its threads and any child. Every step prints the
# server's CPU while perfdhcp ran and its CPU per exchange (server CPU /
# ACKs), beside the process's own figure from /proc (threads and reaped
# children) as a check that the cgroup holds it all; the summary gives,
# per server, the median CPU per exchange over the steps at <= 1 % drops
# and over all steps.
# Unlike the highest rate, this figure depends little on what else the
# machine runs: a before/after comparison of one server can be measured
# on a shared machine (-o matchbox at one rate: -a RATE -x RATE).
#
# Usage: bench/dhcp.sh [-n ROUNDS] [-a START] [-i STEP] [-x MAX] [-e EXTRA]
#                      [-p SECONDS] [-R CLIENTS] [-s FULL|NORMAL] [-K mt|st]
#                      [-m MIN_RATIO] [-P RATE] [-o SERVERS] [-d DIR] [-k]
#   -n  rounds (default 3)
#   -a  first target rate, exchanges/s (default 2000)
#   -i  rate step (default 1000)
#   -x  highest target rate (default 20000)
#   -e  steps run after the first one above 1 % drops (default 1)
#   -p  seconds per step (default 8)
#   -R  distinct simulated clients (MACs) perfdhcp draws from (default 4000000)
#   -s  matchbox's --db-synchronous (default FULL)
#   -K  Kea multi-threaded (mt, 2 threads) or single-threaded (st) (default mt)
#   -m  exit 1 when the ratio at <= 1 % drops is below MIN_RATIO
#   -P  also take a CPU profile of matchbox (pprof, --debug-addr) during
#       its first step at target RATE; written to the work directory
#   -o  the servers to ramp: "matchbox kea" (default), "matchbox" or
#       "kea" alone (no ratio then: for before/after figures of one server)
#   -d  parent of the work directory (default /var/tmp); not tmpfs
#   -k  keep the work directory (logs, lease files, profiles)
#
# Environment:
#   MATCHBOX_BIN  a matchbox binary to run instead of building ./cmd/matchbox
#
# Needs root (namespaces), perfdhcp (Debian kea-admin), kea-dhcp4 (Debian
# kea-dhcp4-server), sqlite3, curl, iproute2, go (unless MATCHBOX_BIN).
set -euo pipefail

ROUNDS=3
START=2000
STEP=1000
MAX=20000
EXTRA=1
SECONDS_PER=8
CLIENTS=4000000
SYNC=FULL
KEA_MODE=mt
MIN_RATIO=
PROFILE_RATE=
PARENT=/var/tmp
KEEP=0
SERVERS="matchbox kea"
while getopts "n:a:i:x:e:p:R:s:K:m:P:o:d:kh" opt; do
	case $opt in
	n) ROUNDS=$OPTARG ;;
	a) START=$OPTARG ;;
	i) STEP=$OPTARG ;;
	x) MAX=$OPTARG ;;
	e) EXTRA=$OPTARG ;;
	p) SECONDS_PER=$OPTARG ;;
	R) CLIENTS=$OPTARG ;;
	s) SYNC=$OPTARG ;;
	K) KEA_MODE=$OPTARG ;;
	m) MIN_RATIO=$OPTARG ;;
	P) PROFILE_RATE=$OPTARG ;;
	o) SERVERS=$OPTARG ;;
	d) PARENT=$OPTARG ;;
	k) KEEP=1 ;;
	h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done
case $KEA_MODE in mt | st) ;; *) echo "dhcp.sh: -K $KEA_MODE: want mt or st" >&2; exit 2 ;; esac
case $SERVERS in "matchbox kea" | "kea matchbox" | matchbox | kea) ;; *) echo "dhcp.sh: -o $SERVERS: want \"matchbox kea\", matchbox or kea" >&2; exit 2 ;; esac

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init dhcp.sh

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
need perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server sqlite3:sqlite3 ip:iproute2 curl:curl

bench_workdir "$PARENT" dhcp-bench fsync
FSTYPE=$BENCH_FSTYPE
on_exit 'keep_or_remove "$WORK"'
ID=$$
NS_SRV=mbxb-s-$ID
NS_CLI=mbxb-c-$ID
SRV_PID=
bench_cgroup CG_matchbox "dhcpbench.$ID.matchbox"
bench_cgroup CG_kea "dhcpbench.$ID.kea"
netns_pair "$NS_SRV" "$NS_CLI" "vb$ID" 10.64.0.1/10 10.64.0.2/10
on_exit 'if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi'
RANGE_START=10.64.1.0
RANGE_END=10.127.255.250

build_matchbox "$WORK/matchbox"

wait_udp67() { wait_until 100 0.1 udp_listening "$NS_SRV" 67; }

stop_server() {
	kill "$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}

# start_matchbox DIR: a fresh matchbox with an empty database in DIR.
start_matchbox() {
	local dir=$1 debug=()
	mkdir -p "$dir"
	[ -n "$PROFILE_RATE" ] && debug=(--debug-addr 127.0.0.1:16060)
	in_cgroup "$CG_matchbox" ip netns exec "$NS_SRV" "$MBX" serve --data-dir "$dir" --http-addr 127.0.0.1:18080 \
		--log-level warn --db-synchronous "$SYNC" "${debug[@]}" \
		--dhcp-mode authoritative --dhcp-iface vS --dhcp-range "$RANGE_START-$RANGE_END" \
		--dhcp-lease-time 1h --boot-url http://10.64.0.1:18080 >"$dir/matchbox.log" 2>&1 &
	SRV_PID=$!
	wait_udp67 || { cat "$dir/matchbox.log" >&2; die "matchbox did not start"; }
}

# start_kea DIR: a fresh kea-dhcp4 with an empty lease file in DIR.
start_kea() {
	local dir=$1 mt=false
	mkdir -p "$dir"
	[ "$KEA_MODE" = mt ] && mt=true
	cat >"$dir/kea.json" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "vS" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases.csv", "lfc-interval": 0 },
    "multi-threading": { "enable-multi-threading": $mt, "thread-pool-size": 2, "packet-queue-size": 256 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "10.64.0.0/10", "pools": [ { "pool": "$RANGE_START - $RANGE_END" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$dir/kea.log" } ], "severity": "WARN" } ]
} }
EOF
	in_cgroup "$CG_kea" env KEA_PIDFILE_DIR="$dir" KEA_LOCKFILE_DIR="$dir" ip netns exec "$NS_SRV" kea-dhcp4 -c "$dir/kea.json" >"$dir/stdout" 2>&1 &
	SRV_PID=$!
	wait_udp67 || { cat "$dir/stdout" >&2; die "kea did not start"; }
}

# Figures from a perfdhcp report.
achieved() { awk '/^Rate:/ {print int($2); exit}' "$1"; }
# drop_pct FILE: the exchanges lost, in %: 1 - ACKs / DISCOVERs sent.
drop_pct() {
	awk '/Statistics for: DISCOVER-OFFER/ {s=1} /Statistics for: REQUEST-ACK/ {s=2}
		s==1 && /sent packets:/ {d=$3} s==2 && /sent packets:/ {r=$3} s==2 && /received packets:/ {a=$3}
		END {if (d > 0) printf "%.2f", 100 * (1 - a / d); else print "100"}' "$1"
}
acks() { awk '/Statistics for: REQUEST-ACK/ {s=1} s && /received packets:/ {print $3; exit}' "$1"; }
requests() { awk '/Statistics for: REQUEST-ACK/ {s=1} s && /sent packets:/ {print $3; exit}' "$1"; }
# ack_delay FILE: perfdhcp's average and maximum REQUEST-ACK delay, in ms.
ack_delay() {
	awk '/Statistics for: REQUEST-ACK/ {s=1} s && /avg delay:/ {a=$3} s && /max delay:/ {m=$3; exit}
		END {printf "avg %s max %s ms", (a == "" ? "n/a" : a), (m == "" ? "n/a" : m)}' "$1"
}
# ack_quantile METRICS Q: the upper bound (ms) of the bucket of
# matchbox_dhcp_reply_seconds{type="ack"} holding quantile Q.
ack_quantile() {
	awk -v q="$2" '/^matchbox_dhcp_reply_seconds_bucket\{type="ack",le="/ {
			le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); n++; b[n] = le; c[n] = $2; total = $2 }
		END { if (total == 0) { print "n/a"; exit }
			for (i = 1; i <= n; i++) if (c[i] >= q * total) { if (b[i] == "+Inf") print "inf"; else printf "%g", b[i] * 1000; exit } }' "$1"
}

# check_leases NAME DIR PERF: sets L_OUT to "LEASES ACKS" and fails the run
# when the stored leases do not match the ACKs.
FAIL=0
check_leases() {
	local name=$1 dir=$2 perf=$3 n dip dmac
	if [ "$name" = matchbox ]; then
		read -r n dip dmac <<<"$(sqlite3 -separator ' ' "$dir/matchbox.db" \
			"SELECT count(*), count(DISTINCT ip), count(DISTINCT mac) FROM leases WHERE state = 'bound'")"
	else
		# memfile appends every change; the last line of an address wins.
		read -r n dip dmac <<<"$(awk -F, 'NR > 1 {ip[$1] = $2 "," $10} END {
			for (a in ip) { split(ip[a], f, ","); if (f[2] == 0) { n++; m[f[1]]++ } }
			d = 0; for (k in m) d++; print n + 0, n + 0, d }' "$dir/leases.csv")"
	fi
	local a r
	a=$(acks "$perf")
	r=$(requests "$perf")
	# Expected MAC repeats among a ACKs drawn from CLIENTS: a^2 / (2 CLIENTS).
	local low
	low=$(awk -v a="$a" -v c="$CLIENTS" 'BEGIN {printf "%d", a - 3 * a * a / (2 * c) - 10}')
	L_OUT="$n/$a"
	if [ "$n" != "$dip" ] || [ "$n" != "$dmac" ]; then
		log "FAIL: $name: an address or a MAC is leased twice ($n leases, $dip addresses, $dmac MACs) in $dir"
		FAIL=1
	fi
	if [ "$n" -lt "$low" ] || [ "$n" -gt "$r" ]; then
		log "FAIL: $name: $n leases stored for $a ACKs received and $r REQUESTs sent (want $low..$r) in $dir"
		FAIL=1
	fi
}

# udp_rcvbuf_errors NS: the UDP datagrams the kernel dropped in namespace NS
# because a socket's receive buffer was full (RcvbufErrors of /proc/net/snmp;
# not counted for Kea's raw sockets).
udp_rcvbuf_errors() {
	ip netns exec "$1" awk '/^Udp:/ { if (!c) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i } else { print $c; exit } }' /proc/net/snmp
}

# step NAME ROUND RATE: one step of the ramp; prints its line and sets
# S_RATE (achieved) and S_DROP (%); appends "ROUND RATE DROP% CPU_NS ACKS"
# to $WORK/NAME.cpu.
PROFILED=0
step() {
	local name=$1 round=$2 rate=$3 dir=$WORK/$1-r$2-$3 perf extra=""
	perf=$dir.perf
	local cg_var=CG_$1 cg cpu_start cpu0 cpu1 proc_cpu
	cg=${!cg_var}
	cpu_start=$(cgroup_cpu_ns "$cg")
	"start_$name" "$dir"
	local prof_pid=
	if [ "$name" = matchbox ] && [ -n "$PROFILE_RATE" ] && [ "$rate" = "$PROFILE_RATE" ] && [ "$PROFILED" = 0 ]; then
		PROFILED=1
		ip netns exec "$NS_SRV" curl -s -o "$WORK/matchbox-cpu-$rate.pprof" \
			"http://127.0.0.1:16060/debug/pprof/profile?seconds=$((SECONDS_PER - 1))" &
		prof_pid=$!
	fi
	local rb_srv rb_cli
	rb_srv=$(udp_rcvbuf_errors "$NS_SRV")
	rb_cli=$(udp_rcvbuf_errors "$NS_CLI")
	cpu0=$(cgroup_cpu_ns "$cg")
	ip netns exec "$NS_CLI" perfdhcp -4 -l vC -r "$rate" -R "$CLIENTS" -p "$SECONDS_PER" -W 1000000 \
		>"$perf" 2>&1 || true # perfdhcp exits 3 when packets were dropped
	cpu1=$(cgroup_cpu_ns "$cg")
	proc_cpu=$(proc_cpu_ns "$SRV_PID" 2>/dev/null || echo 0)
	local threads
	threads=$(ls "/proc/$SRV_PID/task" 2>/dev/null | wc -l) || true
	[ -n "$prof_pid" ] && wait "$prof_pid"
	if [ "$name" = matchbox ]; then
		local ev ov
		ip netns exec "$NS_SRV" curl -s http://127.0.0.1:18080/metrics >"$dir.metrics" || true
		ev=$(awk '/^matchbox_events_dropped_total / {print $2}' "$dir.metrics")
		ov=$(awk '/^matchbox_dhcp_dropped_total\{reason="overload"\}/ {print $2}' "$dir.metrics")
		stop_server
		local machines
		machines=$(sqlite3 "$dir/matchbox.db" "SELECT count(*) FROM machines")
		extra=" ACK p50 <= $(ack_quantile "$dir.metrics" 0.5) ms p99 <= $(ack_quantile "$dir.metrics" 0.99) ms, events dropped ${ev:-n/a}, requests dropped for overload ${ov:-n/a}, machines created $machines,"
	else
		stop_server
		extra=","
	fi
	extra+=" kernel receive-buffer drops server $(($(udp_rcvbuf_errors "$NS_SRV") - rb_srv)) client $(($(udp_rcvbuf_errors "$NS_CLI") - rb_cli))"
	S_RATE=$(achieved "$perf")
	[ -n "$S_RATE" ] || { cat "$perf" >&2; die "$name: no rate in perfdhcp's report $perf"; }
	S_DROP=$(drop_pct "$perf")
	check_leases "$name" "$dir" "$perf"
	local n_acks cpu_line=""
	n_acks=$(acks "$perf")
	if [ -n "$cg" ]; then
		echo "$round $rate $S_DROP $((cpu1 - cpu0)) $n_acks" >>"$WORK/$name.cpu"
		# Since its start, the cgroup must hold at least what the process
		# counts for itself (all threads, reaped children).
		cpu_line=$(awk -v c="$((cpu1 - cpu0))" -v a="$n_acks" -v cg="$((cpu1 - cpu_start))" -v p="$proc_cpu" -v t="$threads" 'BEGIN {
			printf ", server CPU %.2f s, %.1f us per exchange (since start: cgroup %.2f s, process %.2f s, %d threads)",
				c / 1e9, (a > 0 ? c / a / 1e3 : 0), cg / 1e9, p / 1e9, t }')
		if [ "$proc_cpu" -gt $((cpu1 - cpu_start + 50000000)) ]; then
			log "FAIL: $name: the process used $proc_cpu ns of CPU, more than its cgroup counted ($((cpu1 - cpu_start)) ns)"
			FAIL=1
		fi
	fi
	printf 'round %s %-8s target %6s/s achieved %6s/s drops %6s%%  leases/ACKs %s  ACK delay %s%s%s\n' \
		"$round" "$name" "$rate" "$S_RATE" "$S_DROP" "$L_OUT" "$(ack_delay "$perf")" "$extra" "$cpu_line"
	[ "$KEEP" = 1 ] || rm -rf "$dir" "$perf" "$dir.metrics"
}

# ramp NAME ROUND: steps up until drops pass 1 %; appends "best sat" to
# $WORK/NAME.results.
ramp() { bench_ramp "$1" "$2" "$WORK/$1.results" "$(printf '%-8s' "$1")"; }

echo "dhcp.sh: $(date -u +%FT%TZ), load average at start: $(loadavg), $(nproc) cores"
echo "work directory $WORK on $FSTYPE; $ROUNDS rounds, ramp $START..$MAX/s step $STEP, ${SECONDS_PER}s per step, $CLIENTS clients, matchbox --db-synchronous $SYNC, Kea $KEA_MODE $(kea-dhcp4 -v)"
for r in $(seq "$ROUNDS"); do
	order=$SERVERS
	if [ "$SERVERS" = "matchbox kea" ] || [ "$SERVERS" = "kea matchbox" ]; then
		if [ $((r % 2)) = 1 ]; then order="matchbox kea"; else order="kea matchbox"; fi
	fi
	for s in $order; do ramp "$s" "$r"; done
done

# median [FORMAT]: the median of the numbers on stdin, the mean of the middle
# two printed with FORMAT (default %d) when they are even; nothing for none.
median() { sort -n | awk -v f="${1:-%d}" '{v[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else printf f "\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v m="$1" -v k="$2" 'BEGIN {printf "%.2f", (k > 0 ? m / k : 0)}'; }
printf '\nmedian of %s rounds   at <= 1%% drops   saturation\n' "$ROUNDS"
for s in matchbox kea; do
	[ -f "$WORK/$s.results" ] || continue
	printf '%-20s %15s/s %12s/s\n' "$s" "$(awk '{print $1}' "$WORK/$s.results" | median)" "$(awk '{print $2}' "$WORK/$s.results" | median)"
done
RATIO=
if [ -f "$WORK/matchbox.results" ] && [ -f "$WORK/kea.results" ]; then
	M_BEST=$(awk '{print $1}' "$WORK/matchbox.results" | median)
	M_SAT=$(awk '{print $2}' "$WORK/matchbox.results" | median)
	K_BEST=$(awk '{print $1}' "$WORK/kea.results" | median)
	K_SAT=$(awk '{print $2}' "$WORK/kea.results" | median)
	RATIO=$(ratio "$M_BEST" "$K_BEST")
	printf '%-20s %17s %14s\n' "ratio matchbox/kea" "$RATIO" "$(ratio "$M_SAT" "$K_SAT")"
fi
CPU_M= CPU_K=
cpu_median() { # cpu_median NAME MAX_DROP: median us per exchange over its steps with at most MAX_DROP % drops
	[ -f "$WORK/$1.cpu" ] || return 0
	awk -v max="$2" '$3 <= max && $5 > 0 {printf "%.1f\n", $4 / $5 / 1e3}' "$WORK/$1.cpu" | median %.1f
}
if [ -f "$WORK/matchbox.cpu" ] || [ -f "$WORK/kea.cpu" ]; then
	# Under load few steps stay under 1 % drops: the median of all steps
	# is printed too (a step's CPU per ACK then includes lost exchanges).
	for sel in "1 of the steps at <= 1% drops" "100 of all steps"; do
		CPU_M=$(cpu_median matchbox "${sel%% *}")
		CPU_K=$(cpu_median kea "${sel%% *}")
		printf 'server CPU per exchange, median %s: matchbox %s us, kea %s us' "${sel#* }" "${CPU_M:-n/a}" "${CPU_K:-n/a}"
		[ -n "$CPU_M" ] && [ -n "$CPU_K" ] && printf ' (matchbox/kea %s)' "$(awk -v m="$CPU_M" -v k="$CPU_K" 'BEGIN {printf "%.2f", m / k}')"
		printf '\n'
	done
	for s in matchbox kea; do
		[ -f "$WORK/$s.cpu" ] && printf '%s per step (round rate us):%s\n' "$s" "$(awk '$5 > 0 {printf " %s %s %.1f;", $1, $2, $4 / $5 / 1e3}' "$WORK/$s.cpu")"
	done
elif [ -z "$CG_matchbox" ]; then
	log "(no cgroup for CPU accounting: server CPU not reported)"
fi
echo "per round (at <= 1 %, saturation):$(for s in matchbox kea; do [ -f "$WORK/$s.results" ] && printf ' %s %s' "$s" "$(tr '\n' ';' <"$WORK/$s.results")"; done)"
echo "load average at end: $(loadavg)"
if [ -n "$PROFILE_RATE" ] && [ -f "$WORK/matchbox-cpu-$PROFILE_RATE.pprof" ]; then
	echo "matchbox CPU profile at $PROFILE_RATE/s: $WORK/matchbox-cpu-$PROFILE_RATE.pprof (go tool pprof -top $MBX FILE)"
	KEEP=1
fi

if [ -n "$MIN_RATIO" ] && [ -n "$RATIO" ] && awk -v r="$RATIO" -v m="$MIN_RATIO" 'BEGIN {exit !(r < m)}'; then
	log "FAIL: ratio $RATIO below $MIN_RATIO"
	FAIL=1
fi
exit $FAIL
