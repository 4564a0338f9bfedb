#!/usr/bin/env bash
# bench/dhcp.sh: DHCPv4 lease throughput of matchbox (authoritative mode)
# against ISC Kea, in one run, with ISC perfdhcp as the client.
#
# Two network namespaces joined by a veth pair: the server side holds
# 10.77.0.1/16, the client side 10.77.0.2/16. matchbox (`matchbox serve
# --dhcp-mode authoritative`, SQLite leases) and then kea-dhcp4 (memfile
# leases, persisted to a CSV file) serve the range 10.77.1.0-10.77.255.250 in
# the server namespace; perfdhcp runs in the client namespace at a fixed rate
# of 4-way exchanges (DISCOVER, OFFER, REQUEST, ACK) for a fixed time. The
# script prints exchanges/s and drops for both, and the ratio matchbox/Kea.
# After matchbox's run it checks its SQLite file: every MAC once, every
# address once.
#
# Usage: bench/dhcp.sh [-r RATE] [-R CLIENTS] [-p SECONDS] [-s FULL|NORMAL]
#                      [-m MIN_RATIO] [-k]
#   -r  exchanges/s perfdhcp attempts (default 4500)
#   -R  distinct simulated clients (MACs) (default 40000)
#   -p  seconds per server (default 20)
#   -s  matchbox's --db-synchronous (default FULL)
#   -m  exit 1 when the ratio is below MIN_RATIO (default: report only)
#   -k  keep the work directory (logs, databases) for inspection
#
# Environment:
#   MATCHBOX_BIN  a matchbox binary to run instead of building ./cmd/matchbox
#
# Needs root (namespaces), perfdhcp (Debian kea-admin), kea-dhcp4 (Debian
# kea-dhcp4-server), sqlite3, iproute2, go (unless MATCHBOX_BIN).
set -euo pipefail

RATE=4500
CLIENTS=40000
SECONDS_PER=20
SYNC=FULL
MIN_RATIO=
KEEP=0
while getopts "r:R:p:s:m:kh" opt; do
	case $opt in
	r) RATE=$OPTARG ;;
	R) CLIENTS=$OPTARG ;;
	p) SECONDS_PER=$OPTARG ;;
	s) SYNC=$OPTARG ;;
	m) MIN_RATIO=$OPTARG ;;
	k) KEEP=1 ;;
	h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '%s\n' "$*" >&2; }
die() { log "dhcp.sh: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
for c in perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server sqlite3:sqlite3 ip:iproute2; do
	command -v "${c%%:*}" >/dev/null || die "missing ${c%%:*} (Debian package ${c##*:})"
done

WORK=$(mktemp -d /tmp/dhcp-bench.XXXXXX)
ID=$$
NS_SRV=mbxb-s-$ID
NS_CLI=mbxb-c-$ID
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NS_SRV" 2>/dev/null || true
	ip netns del "$NS_CLI" 2>/dev/null || true
	if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

ip netns add "$NS_SRV"
ip netns add "$NS_CLI"
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up
ip link add vbs-$ID netns "$NS_SRV" type veth peer name vbc-$ID netns "$NS_CLI"
ip -n "$NS_SRV" link set vbs-$ID name vS
ip -n "$NS_CLI" link set vbc-$ID name vC
ip -n "$NS_SRV" addr add 10.77.0.1/16 dev vS
ip -n "$NS_CLI" addr add 10.77.0.2/16 dev vC
ip -n "$NS_SRV" link set vS up
ip -n "$NS_CLI" link set vC up

if [ -n "${MATCHBOX_BIN:-}" ]; then
	MBX=$MATCHBOX_BIN
else
	log "building matchbox"
	MBX=$WORK/matchbox
	(cd "$REPO" && go build -o "$MBX" ./cmd/matchbox)
fi

# run_perfdhcp NAME: perfdhcp against whatever serves now; prints its report
# to $WORK/NAME.perf.
run_perfdhcp() {
	ip netns exec "$NS_CLI" perfdhcp -4 -l vC -r "$RATE" -R "$CLIENTS" -p "$SECONDS_PER" \
		>"$WORK/$1.perf" 2>&1 || true # perfdhcp exits 3 when packets were dropped
}

# rate FILE, drops FILE: figures from a perfdhcp report.
rate() { awk '/^Rate:/ {print $2; exit}' "$1"; }
drops() { awk '/drops ratio:/ {gsub("%","",$3); s=s $3 "% "} END {print s}' "$1"; }

wait_udp67() { # wait until something listens on UDP 67 in the server namespace
	for _ in $(seq 100); do
		ip netns exec "$NS_SRV" ss -Hlun 'sport = :67' | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

# --- matchbox ---
mkdir -p "$WORK/mbx"
ip netns exec "$NS_SRV" "$MBX" serve --data-dir "$WORK/mbx" --http-addr 127.0.0.1:18080 \
	--log-level warn --db-synchronous "$SYNC" \
	--dhcp-mode authoritative --dhcp-iface vS --dhcp-range 10.77.1.0-10.77.255.250 \
	--dhcp-lease-time 1h --boot-url http://10.77.0.1:18080 >"$WORK/matchbox.log" 2>&1 &
MPID=$!
PIDS+=("$MPID")
wait_udp67 || { cat "$WORK/matchbox.log" >&2; die "matchbox did not start"; }
log "perfdhcp against matchbox: $RATE/s, $CLIENTS clients, ${SECONDS_PER}s"
run_perfdhcp matchbox
kill "$MPID"
wait "$MPID" || true

DB=$WORK/mbx/matchbox.db
read -r LEASES DIST_IP DIST_MAC <<<"$(sqlite3 -separator ' ' "$DB" \
	"SELECT count(*), count(DISTINCT ip), count(DISTINCT mac) FROM leases WHERE state = 'bound'")"
ACKED=$(awk '/Statistics for: REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}' "$WORK/matchbox.perf")

# --- Kea ---
mkdir -p "$WORK/kea"
cat >"$WORK/kea/kea.json" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "vS" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$WORK/kea/leases.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "10.77.0.0/16", "pools": [ { "pool": "10.77.1.0 - 10.77.255.250" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$WORK/kea/kea.log" } ], "severity": "WARN" } ]
} }
EOF
KEA_PIDFILE_DIR=$WORK/kea KEA_LOCKFILE_DIR=$WORK/kea ip netns exec "$NS_SRV" kea-dhcp4 -c "$WORK/kea/kea.json" >"$WORK/kea/stdout" 2>&1 &
KPID=$!
PIDS+=("$KPID")
wait_udp67 || { cat "$WORK/kea/stdout" >&2; die "kea did not start"; }
log "perfdhcp against kea: $RATE/s, $CLIENTS clients, ${SECONDS_PER}s"
run_perfdhcp kea
kill "$KPID"
wait "$KPID" || true

M_RATE=$(rate "$WORK/matchbox.perf")
K_RATE=$(rate "$WORK/kea.perf")
[ -n "$M_RATE" ] || { cat "$WORK/matchbox.perf" >&2; die "no rate in matchbox's perfdhcp report"; }
[ -n "$K_RATE" ] || { cat "$WORK/kea.perf" >&2; die "no rate in kea's perfdhcp report"; }
RATIO=$(awk -v m="$M_RATE" -v k="$K_RATE" 'BEGIN {printf "%.2f", (k > 0 ? m / k : 0)}')

printf '\n%-10s %14s   %s\n' server "exchanges/s" "drops (DISCOVER-OFFER, REQUEST-ACK)"
printf '%-10s %14s   %s\n' matchbox "$M_RATE" "$(drops "$WORK/matchbox.perf")"
printf '%-10s %14s   %s\n' kea "$K_RATE" "$(drops "$WORK/kea.perf")"
printf 'ratio matchbox/kea: %s  (target rate %s/s, %s clients, %ss each, matchbox --db-synchronous %s)\n' \
	"$RATIO" "$RATE" "$CLIENTS" "$SECONDS_PER" "$SYNC"
printf 'matchbox leases in SQLite: %s bound, %s distinct addresses, %s distinct MACs; perfdhcp received %s ACKs\n' \
	"$LEASES" "$DIST_IP" "$DIST_MAC" "$ACKED"

FAIL=0
if [ "$LEASES" != "$DIST_IP" ] || [ "$LEASES" != "$DIST_MAC" ]; then
	log "FAIL: an address or a MAC appears twice among matchbox's leases"
	FAIL=1
fi
if [ "$LEASES" = 0 ]; then
	log "FAIL: matchbox stored no lease"
	FAIL=1
fi
if [ -n "$MIN_RATIO" ] && awk -v r="$RATIO" -v m="$MIN_RATIO" 'BEGIN {exit !(r < m)}'; then
	log "FAIL: ratio $RATIO below $MIN_RATIO"
	FAIL=1
fi
exit $FAIL
