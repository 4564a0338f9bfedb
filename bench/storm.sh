#!/usr/bin/env bash
# bench/storm.sh: a boot storm against matchbox and against dnsmasq (DHCP,
# TFTP) with nginx (HTTP) serving the same bytes, side by side in one run.
#
# Two network namespaces joined by a veth pair: the servers hold
# 10.70.0.1/16, the load generator (bench/storm, Go) 10.70.0.2/16. N
# simulated machines, each with its own MAC, boot all at once as PXE BIOS
# firmware would: DHCP DISCOVER/REQUEST (raw socket on the veth), TFTP of
# undionly.kpxe, /boot.ipxe, /ipxe?mac=, the kernel and initrd the script
# names (KERNEL_MIB MiB of random bytes each) and /ignition?mac=.
#
# matchbox serves everything (`matchbox serve`, authoritative DHCP with
# SQLite leases synchronous FULL, its own TFTP, one default group whose
# profile has a kernel argument templated from the group's metadata and
# a Butane config rendered per machine). The peer is dnsmasq (DHCP without ping, TFTP) and nginx serving the bytes matchbox
# answered for /boot.ipxe, /ipxe and /ignition as static files, and the
# same kernel and initrd. Every server starts fresh (no lease) for each
# storm. For each N (1,000 and 10,000 by default), rounds alternate which
# side storms first; every storm's report is printed (completions,
# failures, p50/p99 per stage and overall, the most machines in each
# stage at once, the servers' peak RSS, the UDP datagrams the kernel dropped
# for full receive buffers in both namespaces, matchbox's TFTP retransmissions), then a
# summary with the ratio of matchbox's overall p50 and p99 to the peer's. Load average is printed
# at start and end (the machine is shared).
#
# Usage: bench/storm.sh [-N "1000 10000"] [-n ROUNDS] [-m KERNEL_MIB]
#                       [-c CONCURRENCY] [-d DIR] [-k]
#   -N  machine counts to storm with (default "1000 10000")
#   -n  rounds per count (default 2: each side goes first once)
#   -m  size of the kernel and of the initrd, MiB (default 4)
#   -c  machines booting at once (default: all)
#   -d  parent of the work directory (default /var/tmp)
#   -k  keep the work directory (logs, reports, lease files)
#
# Environment:
#   MATCHBOX_BIN, STORM_BIN  binaries to run instead of building
#                            ./cmd/matchbox and ./bench/storm/cmd/storm
#   STORM_TIMEOUT            bound of one storm (default 30m); the load
#                            generator's goroutines are dumped when it is hit
#   STORM_HEAP=1             take matchbox's heap profile (--debug-addr) each
#                            time its RSS reaches a new peak during a storm;
#                            the last one is kept as matchbox-heap-N-rR.pprof
#                            in the work directory (use with -k)
#
# Needs root (namespaces), dnsmasq (Debian dnsmasq-base), nginx (Debian
# nginx-light or nginx), jq, curl, iproute2, /usr/lib/ipxe/undionly.kpxe
# (Debian ipxe), go (unless both binaries are given).
# Exit status 1 when any storm had a failure.
set -euo pipefail

COUNTS="1000 10000"
ROUNDS=2
KERNEL_MIB=4
CONC=0
PARENT=/var/tmp
KEEP=0
STORM_TIMEOUT=${STORM_TIMEOUT:-30m}
while getopts "N:n:m:c:d:kh" opt; do
	case $opt in
	N) COUNTS=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	m) KERNEL_MIB=$OPTARG ;;
	c) CONC=$OPTARG ;;
	d) PARENT=$OPTARG ;;
	k) KEEP=1 ;;
	h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init storm.sh

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
need dnsmasq:dnsmasq-base nginx:nginx-light jq:jq curl:curl ip:iproute2
[ -f /usr/lib/ipxe/undionly.kpxe ] || die "missing /usr/lib/ipxe/undionly.kpxe (Debian package ipxe)"
ulimit -n "$(ulimit -Hn)" # storms of 10,000 machines open that many sockets

bench_workdir "$PARENT" storm-bench
chmod 755 "$WORK" # nginx's workers (www-data) read the web root in it
on_exit 'keep_or_remove "$WORK"'
ID=$$
NS_SRV=mbxs-s-$ID
NS_CLI=mbxs-c-$ID
PIDS=()
netns_pair "$NS_SRV" "$NS_CLI" "vs$ID" 10.70.0.1/16 10.70.0.2/16
on_exit stop_all
SRV=10.70.0.1
BASE=http://$SRV:8080

build_matchbox "$WORK/matchbox"
STORM=${STORM_BIN:-}
if [ -z "$STORM" ]; then
	log "building bench/storm"
	STORM=$WORK/storm
	(cd "$REPO" && go build -o "$STORM" ./bench/storm/cmd/storm)
fi

# Assets shared by both sides: kernel, initrd, the iPXE binary.
ASSETS=$WORK/assets
mkdir -p "$ASSETS/storm" "$ASSETS/tftp"
head -c "$((KERNEL_MIB << 20))" /dev/urandom >"$ASSETS/storm/vmlinuz"
head -c "$((KERNEL_MIB << 20))" /dev/urandom >"$ASSETS/storm/initrd.img"
cp -L /usr/lib/ipxe/undionly.kpxe "$ASSETS/tftp/"

# matchbox's data directory: one default group, a profile with a templated
# kernel argument and an Ignition config rendered per machine.
DATA=$WORK/data
mkdir -p "$DATA/profiles" "$DATA/groups" "$DATA/ignition"
cat >"$DATA/profiles/storm.json" <<EOF
{ "id": "storm", "name": "boot storm",
  "boot": { "kernel": "/assets/storm/vmlinuz", "initrd": ["/assets/storm/initrd.img"],
            "args": ["initrd=initrd.img", "console=ttyS0", "storm.role={{.role}}", "ignition.config.url=$BASE/ignition?mac=\${mac:hexhyp}"] },
  "ignition_id": "storm.yaml" }
EOF
cat >"$DATA/groups/default.json" <<EOF
{ "id": "default", "name": "every machine", "profile": "storm", "metadata": { "role": "storm" } }
EOF
cat >"$DATA/ignition/storm.yaml" <<'EOF'
variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/storm-role
      contents:
        inline: "{{.role}}"
EOF

wait_http() { # wait_http URL: until it answers in the server namespace
	wait_until 150 0.1 ip netns exec "$NS_SRV" curl -sf -o /dev/null "$1"
}
stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}

start_matchbox() { # start_matchbox DIR
	local dir=$1
	mkdir -p "$dir"
	ip netns exec "$NS_SRV" "$MBX" serve --data-dir "$DATA" --db "$dir/matchbox.db" --assets-dir "$ASSETS" \
		--http-addr "$SRV:8080" --api-addr 127.0.0.1:18081 --log-level warn \
		--dhcp-mode authoritative --dhcp-iface vS --dhcp-range 10.70.1.0-10.70.255.250 --dhcp-lease-time 1h \
		--boot-url "$BASE" --tftp-addr "$SRV:69" --tftp-root "$ASSETS/tftp" \
		${STORM_HEAP:+--debug-addr 127.0.0.1:18083} >"$dir/matchbox.log" 2>&1 &
	PIDS+=($!)
	wait_http "$BASE/healthz" || { cat "$dir/matchbox.log" >&2; die "matchbox did not start"; }
}

# The peer's web root: matchbox's answers, fetched once, as static files.
WWW=$WORK/www
mkdir -p "$WWW/assets"
cp -r "$ASSETS/storm" "$WWW/assets/"
start_matchbox "$WORK/render"
MAC1=52:54:01:00:00:01
ip netns exec "$NS_SRV" curl -sf -o "$WWW/boot.ipxe" "$BASE/boot.ipxe"
ip netns exec "$NS_SRV" curl -sf -o "$WWW/ipxe" "$BASE/ipxe?mac=$MAC1"
ip netns exec "$NS_SRV" curl -sf -o "$WWW/ignition" "$BASE/ignition?mac=$MAC1"
stop_all
grep -q "^kernel /assets/storm/vmlinuz.*storm.role=storm" "$WWW/ipxe" || die "matchbox's /ipxe names no kernel: $(cat "$WWW/ipxe")"
grep -q storm-role "$WWW/ignition" || die "matchbox's /ignition is not the rendered config: $(cat "$WWW/ignition")"

cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.error.log warn;
daemon off;
events { worker_connections 16384; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    server {
        listen $SRV:8080 backlog=16384;
        root $WWW;
        location / { try_files \$uri =404; }
    }
}
EOF
mkdir -p "$WORK/nginx-tmp"

start_peer() { # start_peer DIR
	local dir=$1
	mkdir -p "$dir"
	ip netns exec "$NS_SRV" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
		--interface=vS --bind-interfaces --log-facility="$dir/dnsmasq.log" --pid-file="$dir/dnsmasq.pid" \
		--dhcp-range=10.70.1.0,10.70.255.250,255.255.0.0,1h --dhcp-authoritative --no-ping \
		--dhcp-lease-max=100000 --dhcp-leasefile="$dir/dnsmasq.leases" --dhcp-boot=undionly.kpxe \
		--enable-tftp --tftp-root="$ASSETS/tftp" --tftp-max=50000 &
	PIDS+=($!)
	ip netns exec "$NS_SRV" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx.error.log" &
	PIDS+=($!)
	wait_http "$BASE/boot.ipxe" || { cat "$WORK/nginx.error.log" >&2; die "nginx did not start"; }
	wait_until 50 0.1 udp_listening "$NS_SRV" 67 && return 0
	die "dnsmasq did not start: $(cat "$dir/dnsmasq.log")"
}

FAIL=0
# storm NAME N ROUND: one storm against whatever serves now.
storm() {
	local name=$1 n=$2 round=$3 out=$WORK/$1-$2-r$3.json
	local args=(-n "$n" -iface vC -tftp "$SRV:69" -http "$BASE" -json)
	[ "$CONC" -gt 0 ] && args+=(-c "$CONC")
	local rc=0 sampler=""
	if [ -n "${STORM_HEAP:-}" ] && [ "$name" = matchbox ]; then
		heap_sampler "${PIDS[0]}" "$WORK/matchbox-heap-$n-r$round.pprof" & sampler=$!
	fi
	local drops_srv drops_cli
	drops_srv=$(rcvbuf_errors "$NS_SRV") drops_cli=$(rcvbuf_errors "$NS_CLI")
	timeout -s QUIT "$STORM_TIMEOUT" ip netns exec "$NS_CLI" "$STORM" "${args[@]}" >"$out" 2>"$WORK/$1-$2-r$3.err" || rc=$?
	[ -z "$sampler" ] || { kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; }
	if [ "$rc" = 124 ] || [ "$rc" = 131 ]; then
		grep -B2 -A1 'bench/storm\.' "$WORK/$1-$2-r$3.err" | head -n 60 >&2
		die "$name: storm of $n still running after $STORM_TIMEOUT (the load generator's goroutines above; whole dump in $WORK/$1-$2-r$3.err with -k)"
	fi
	[ -s "$out" ] || { cat "$WORK/$1-$2-r$3.err" >&2; die "$name: storm of $n wrote no report"; }
	printf '\nround %s, %s machines, %s: load average %s\n' "$round" "$n" "$name" "$(loadavg)"
	jq -r '
		def s: . / 1e9 | . * 1000 | round / 1000 | tostring + "s";
		"  completed \(.completed) failed \(.failed) of \(.machines) in \(.duration_ns | s), \(.bytes / 1048576 | floor) MiB received",
		(. as $r | ["dhcp", "tftp", "boot.ipxe", "ipxe", "kernel", "initrd", "config"][] | . as $k | $r.stages[$k] // empty |
			"  \($k + "          " | .[0:10]) \(.count) ok \(.failed) failed  p50 \(.p50_ns | s)  p99 \(.p99_ns | s)  max \(.max_ns | s)  peak \(.peak // "?") at once"),
		"  overall    \(.overall.count) ok  p50 \(.overall.p50_ns | s)  p99 \(.overall.p99_ns | s)  max \(.overall.max_ns | s)",
		(.failures // [] | .[] | "  failure: \(.)")' "$out"
	printf '  server peak RSS %s MiB\n' "$(peak_rss_mib "${PIDS[@]}")"
	printf '  UDP datagrams dropped for a full receive buffer: %s at the servers, %s at the machines\n' \
		"$(($(rcvbuf_errors "$NS_SRV") - drops_srv))" "$(($(rcvbuf_errors "$NS_CLI") - drops_cli))"
	if [ "$name" = matchbox ]; then
		printf '  TFTP datagrams sent again (unacknowledged): %s\n' "$(ip netns exec "$NS_SRV" curl -sf "$BASE/metrics" |
			awk '$1 == "matchbox_tftp_retransmits_total" {print $2}')"
	fi
	if [ "$(jq .failed "$out")" != 0 ]; then FAIL=1; fi
}

# rcvbuf_errors NS: the UDP datagrams the kernel dropped in namespace NS
# because a socket's receive buffer was full (UdpRcvbufErrors).
rcvbuf_errors() {
	ip netns exec "$1" awk '$1 == "Udp:" && !h {for (i = 1; i <= NF; i++) col[$i] = i; h = 1; next}
		$1 == "Udp:" {print $col["RcvbufErrors"]}' /proc/net/snmp
}

# heap_sampler PID FILE: every second, when matchbox's RSS is above the
# highest seen, saves its heap profile (in-use and allocated) as FILE.
heap_sampler() {
	local pid=$1 file=$2 max=0 rss
	while sleep 1; do
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 0
		[ -n "$rss" ] || return 0
		if [ "$rss" -gt "$max" ]; then
			max=$rss
			ip netns exec "$NS_SRV" curl -sf -o "$file.tmp" "http://127.0.0.1:18083/debug/pprof/heap" &&
				mv "$file.tmp" "$file" && echo "$rss" >"$file.rss-kib"
		fi
	done
}

# peak_rss_mib PID...: the summed peak RSS (VmHWM) of the processes and
# their children (nginx's workers), MiB.
peak_rss_mib() {
	local p kids=()
	for p in "$@"; do kids+=($(pgrep -P "$p" || true)); done
	for p in "$@" "${kids[@]}"; do cat "/proc/$p/status" 2>/dev/null || true; done |
		awk '/^VmHWM:/ {kb += $2} END {printf "%.0f", kb / 1024}'
}

echo "storm.sh: $(date -u +%FT%TZ), load average at start: $(loadavg), $(nproc) cores"
echo "counts: $COUNTS; $ROUNDS rounds each; kernel and initrd ${KERNEL_MIB} MiB each; peer: $(dnsmasq --version | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3)"
for n in $COUNTS; do
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then order="matchbox peer"; else order="peer matchbox"; fi
		for side in $order; do
			if [ "$side" = matchbox ]; then start_matchbox "$WORK/matchbox-$n-r$r"; else start_peer "$WORK/peer-$n-r$r"; fi
			storm "$side" "$n" "$r"
			stop_all
		done
	done
done

printf '\nsummary (median over rounds; ratio matchbox/peer: lower is faster for matchbox)\n'
printf '%-8s %-9s %10s %8s %11s %11s\n' N side completed failed "p50 overall" "p99 overall"
for n in $COUNTS; do
	for side in matchbox peer; do
		jq -s -r --arg side "$side" --arg n "$n" '
			def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
			"\($n) \($side) \(map(.completed) | med) \(map(.failed) | add) \(map(.overall.p50_ns) | med / 1e9) \(map(.overall.p99_ns) | med / 1e9)"' \
			"$WORK/$side-$n"-r*.json
	done | awk '{printf "%-8s %-9s %10s %8s %10.3fs %10.3fs\n", $1, $2, $3, $4, $5, $6; p50[$2] = $5; p99[$2] = $6}
		END {printf "%-8s ratio     %30.2f %11.2f\n", "", (p50["peer"] > 0 ? p50["matchbox"] / p50["peer"] : 0), (p99["peer"] > 0 ? p99["matchbox"] / p99["peer"] : 0)}'
done
echo "load average at end: $(loadavg)"
exit $FAIL
