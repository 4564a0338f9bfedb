#!/usr/bin/env bash
# bench/tftp.sh: TFTP throughput of matchbox against tftpd-hpa, in one run.
#
# Both servers serve the same 1 MiB file from one directory on loopback:
# matchbox through its real binary (`matchbox serve --tftp-addr ... --tftp-root
# ...`), tftpd-hpa as `in.tftpd -L -s DIR -a 127.0.0.1:PORT` in the
# foreground. Each round runs CONCURRENCY downloads at once with the same
# client against each server (the order alternates between rounds), checks
# every downloaded file's sha256, and times the round. At the end it prints
# transfers/s and MiB/s for both and the ratio matchbox/tftpd-hpa.
#
# Usage: bench/tftp.sh [-c CONCURRENCY] [-r ROUNDS] [-s SIZE_KIB] [-b BLKSIZE]
#                      [-C curl|tftp] [-m MIN_RATIO] [-P DIR] [-k]
#   -c  concurrent downloads per round (default 50)
#   -r  rounds per server (default 5)
#   -s  file size in KiB (default 1024)
#   -b  blksize curl asks for (default 1468, the usual PXE value); the
#       tftp-hpa client sends no options, so it always uses 512
#   -C  client: curl (tftp://, default) or tftp (tftp-hpa)
#   -m  exit 1 when the ratio is below MIN_RATIO (default: report only)
#   -P  profile matchbox: a CPU profile of each of its rounds (pprof, from
#       --debug-addr, PROFILE_SECONDS long, default 10) is written to
#       DIR/cpu.roundN.pprof, with the binary as DIR/matchbox; read them
#       with `go tool pprof -top DIR/matchbox DIR/cpu.round1.pprof`
#   -k  keep the work directory (logs, files) for inspection
#
# Environment:
#   MATCHBOX_BIN  a matchbox binary to run instead of building ./cmd/matchbox
#                 (any binary that takes the same `serve` flags)
#   MATCHBOX_PORT, HPA_PORT  UDP ports on 127.0.0.1 (default: free ones)
#   PEER_BIN      a second matchbox binary run as the peer instead of
#                 tftpd-hpa (printed as "peer"): two versions side by side in
#                 one run, alternated, each in its own cgroup; the CPU ratio
#                 printed is then peer/matchbox
#
# Needs: go (unless MATCHBOX_BIN), in.tftpd (Debian tftpd-hpa), curl or the
# tftp-hpa client, sha256sum. Missing Debian packages are installed with
# apt-get. Runs as root (tftpd-hpa needs it to chroot and change user).
set -euo pipefail

CONCURRENCY=50
ROUNDS=5
SIZE_KIB=1024
BLKSIZE=1468
CLIENT=curl
MIN_RATIO=
KEEP=0
PROF_DIR=
while getopts "c:r:s:b:C:m:P:kh" opt; do
	case $opt in
	c) CONCURRENCY=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	s) SIZE_KIB=$OPTARG ;;
	b) BLKSIZE=$OPTARG ;;
	C) CLIENT=$OPTARG ;;
	m) MIN_RATIO=$OPTARG ;;
	P) PROF_DIR=$OPTARG ;;
	k) KEEP=1 ;;
	h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init tftp.sh

need_pkg() { # need_pkg COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "installing $2 for $1"
		{ apt-get install -y --no-install-recommends "$2" ||
			{ apt-get update && apt-get install -y --no-install-recommends "$2"; }; } >/dev/null 2>&1 || true
	fi
	command -v "$1" >/dev/null 2>&1 || die "$1 not found (Debian package $2)"
}

# tftpd-hpa chroots (-s) and changes user for every transfer: root only.
[ "$(id -u)" = 0 ] || die "run as root: tftpd-hpa needs root to chroot and drop privileges"
need_pkg sha256sum coreutils
[ -n "${PEER_BIN:-}" ] || need_pkg in.tftpd tftpd-hpa
case $CLIENT in
curl) need_pkg curl curl ;;
tftp) need_pkg tftp tftp-hpa ;;
*) die "unknown client $CLIENT (curl or tftp)" ;;
esac
IN_TFTPD=$(command -v in.tftpd || true)
PEER=tftpd-hpa
[ -z "${PEER_BIN:-}" ] || PEER=peer

bench_workdir "${TMPDIR:-/tmp}" tftpbench
on_exit 'keep_or_remove "$WORK"'
PIDS=()
# Server CPU, children included, when a cgroup can be made for each server
# (bench_cgroup): it does not depend on what else the machine runs, unlike
# the wall time. The cgroups are removed after the servers are stopped
# (handlers run last added first).
bench_cgroup MB_CG "tftpbench.$$.matchbox"
bench_cgroup HPA_CG "tftpbench.$$.tftpd-hpa"
[ -n "$MB_CG" ] && [ -n "$HPA_CG" ] || MB_CG='' HPA_CG=''
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}
on_exit cleanup

# The served directory: readable by tftpd-hpa after it drops to nobody.
ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/data" "$WORK/out"
chmod 755 "$WORK" "$ROOT"
FILE=bench.bin
head -c "$((SIZE_KIB * 1024))" /dev/urandom >"$ROOT/$FILE"
chmod 644 "$ROOT/$FILE"
SUM=$(sha256sum <"$ROOT/$FILE" | cut -d' ' -f1)
SIZE_BYTES=$((SIZE_KIB * 1024))

udp_port_free() { ! ss -Hlun 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"; }
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 30000))
		if udp_port_free "$p" && [ "$p" != "${MATCHBOX_PORT:-}" ]; then
			echo "$p"
			return
		fi
	done
	die "no free UDP port found"
}
MATCHBOX_PORT=${MATCHBOX_PORT:-$(free_port)}
HPA_PORT=${HPA_PORT:-$(free_port)}


# matchbox: the real binary.
if [ -n "${MATCHBOX_BIN:-}" ]; then
	BIN=$MATCHBOX_BIN
	[ -x "$BIN" ] || die "MATCHBOX_BIN=$BIN is not executable"
else
	command -v go >/dev/null || die "go not found and MATCHBOX_BIN not set"
	BIN=$WORK/matchbox
	log "building ./cmd/matchbox"
	(cd "$REPO" && go build -o "$BIN" ./cmd/matchbox) || die "go build ./cmd/matchbox failed (set MATCHBOX_BIN to use another binary)"
fi
DEBUG_FLAGS=()
if [ -n "$PROF_DIR" ]; then
	mkdir -p "$PROF_DIR"
	cp "$BIN" "$PROF_DIR/matchbox"
	DEBUG_PORT=$(free_port)
	DEBUG_FLAGS=(--debug-addr "127.0.0.1:$DEBUG_PORT")
fi
in_cgroup "$MB_CG" "$BIN" serve --data-dir "$WORK/data" --http-addr 127.0.0.1:0 "${DEBUG_FLAGS[@]}" \
	--tftp-addr "127.0.0.1:$MATCHBOX_PORT" --tftp-root "$ROOT" >"$WORK/matchbox.log" 2>&1 &
PIDS+=($!)

# tftpd-hpa in the foreground (-L), chrooted to the root (-s); it drops to
# the user nobody for each transfer.
if [ -n "${PEER_BIN:-}" ]; then
	mkdir -p "$WORK/data.peer"
	in_cgroup "$HPA_CG" "$PEER_BIN" serve --data-dir "$WORK/data.peer" --http-addr 127.0.0.1:0 \
		--tftp-addr "127.0.0.1:$HPA_PORT" --tftp-root "$ROOT" >"$WORK/tftpd-hpa.log" 2>&1 &
else
	in_cgroup "$HPA_CG" "$IN_TFTPD" -L -s "$ROOT" -a "127.0.0.1:$HPA_PORT" >"$WORK/tftpd-hpa.log" 2>&1 &
fi
PIDS+=($!)
HPA_NAME=$FILE

# fetch PORT NAME OUT: one download with the chosen client.
fetch() {
	case $CLIENT in
	curl) curl -sS --max-time 120 --tftp-blksize "$BLKSIZE" -o "$3" "tftp://127.0.0.1:$1/$2" ;;
	tftp) tftp 127.0.0.1 "$1" -m binary -c get "$2" "$3" ;;
	esac
}

wait_ready() { # wait_ready NAME PORT FILE LOG
	local i
	for i in $(seq 1 100); do
		if fetch "$2" "$3" "$WORK/ready.$1" >/dev/null 2>&1 &&
			[ "$(sha256sum <"$WORK/ready.$1" | cut -d' ' -f1)" = "$SUM" ]; then
			return 0
		fi
		sleep 0.1
	done
	log "--- $4"
	cat "$4" >&2 || true
	die "$1 did not serve on 127.0.0.1:$2"
}
wait_ready matchbox "$MATCHBOX_PORT" "$FILE" "$WORK/matchbox.log"
wait_ready "$PEER" "$HPA_PORT" "$HPA_NAME" "$WORK/tftpd-hpa.log"

now() { date +%s.%N; }

PROFILE_SECONDS=${PROFILE_SECONDS:-10}
PROF_PID=
wait_profile() { # wait for the running CPU profile, if any
	if [ -n "$PROF_PID" ]; then
		wait "$PROF_PID" || log "CPU profile failed (curl exit $?)"
		PROF_PID=
	fi
}
# start_profile N: with -P, a CPU profile of matchbox from now on, for
# PROFILE_SECONDS, written to $PROF_DIR/cpu.roundN.pprof. pprof allows one
# profile at a time: the previous one is waited for first.
start_profile() {
	[ -n "$PROF_DIR" ] || return 0
	wait_profile
	curl -sS --max-time $((PROFILE_SECONDS + 30)) -o "$PROF_DIR/cpu.round$1.pprof" \
		"http://127.0.0.1:$DEBUG_PORT/debug/pprof/profile?seconds=$PROFILE_SECONDS" </dev/null >/dev/null &
	PROF_PID=$!
	sleep 0.2 # the profiler is on before the downloads start
}

# round NAME PORT FILE CGROUP: CONCURRENCY downloads at once; prints the
# seconds and the server's CPU nanoseconds.
round() {
	local name=$1 port=$2 file=$3 cg=$4 i start end c0 c1 bad=0
	local dir=$WORK/out/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	c0=$(cgroup_cpu_ns "$cg")
	start=$(now)
	local pids=()
	for i in $(seq 1 "$CONCURRENCY"); do
		fetch "$port" "$file" "$dir/$i" 2>"$dir/$i.err" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || bad=$((bad + 1))
	done
	end=$(now)
	c1=$(cgroup_cpu_ns "$cg")
	for i in $(seq 1 "$CONCURRENCY"); do
		if [ ! -f "$dir/$i" ] || [ "$(sha256sum <"$dir/$i" | cut -d' ' -f1)" != "$SUM" ]; then
			bad=$((bad + 1))
		fi
	done
	if [ "$bad" -gt 0 ]; then
		log "$name: $bad failed or corrupt downloads; first errors:"
		cat "$dir"/*.err 2>/dev/null | head -5 >&2
		exit 1
	fi
	awk -v s="$start" -v e="$end" -v c0="$c0" -v c1="$c1" 'BEGIN { printf "%.6f %d\n", e - s, c1 - c0 }'
}

log "tftp.sh: $(date -u +%FT%TZ), load average at start: $(loadavg), $(nproc) cores"
log "matchbox on 127.0.0.1:$MATCHBOX_PORT ($BIN), $PEER on 127.0.0.1:$HPA_PORT${PEER_BIN:+ ($PEER_BIN)}"
log "$ROUNDS rounds x $CONCURRENCY concurrent downloads of $SIZE_KIB KiB, client $CLIENT, blksize $BLKSIZE"
[ -n "$MB_CG" ] || log "(no cgroup for CPU accounting: server CPU not reported)"
RESULTS=$WORK/results
: >"$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		start_profile "$r"
		m=$(round matchbox "$MATCHBOX_PORT" "$FILE" "$MB_CG")
		h=$(round "$PEER" "$HPA_PORT" "$HPA_NAME" "$HPA_CG")
	else
		h=$(round "$PEER" "$HPA_PORT" "$HPA_NAME" "$HPA_CG")
		start_profile "$r"
		m=$(round matchbox "$MATCHBOX_PORT" "$FILE" "$MB_CG")
	fi
	echo "$r $m $h" >>"$RESULTS"
	echo "$r $m $h" | awk -v n="$CONCURRENCY" -v peer="$PEER" '{
		printf "round %d: matchbox %.3fs (%.1f transfers/s)  %s %.3fs (%.1f transfers/s)  ratio %.2f\n",
			$1, $2, n / $2, peer, $4, n / $4, $4 / $2 }'
done

wait_profile
[ -z "$PROF_DIR" ] || log "CPU profiles of matchbox's rounds: $PROF_DIR/cpu.round*.pprof (binary: $PROF_DIR/matchbox)"

# Totals; the median of the per-round ratios is less sensitive to a round
# slowed by other load on the machine.
rc=0
awk -v n="$CONCURRENCY" -v peer="$PEER" -v sz="$SIZE_BYTES" -v min="$MIN_RATIO" -v cpu="${MB_CG:+1}" '
{ mt += $2; mc += $3; ht += $4; hc += $5; ratio[NR] = $4 / $2; rounds = NR }
END {
	total = n * rounds
	m = total / mt; h = total / ht
	printf "matchbox:  %d transfers in %.3fs: %.1f transfers/s, %.1f MiB/s\n", total, mt, m, m * sz / 1048576
	printf "%s: %d transfers in %.3fs: %.1f transfers/s, %.1f MiB/s\n", peer, total, ht, h, h * sz / 1048576
	if (cpu) printf "server CPU per transfer: matchbox %.2f ms, %s %.2f ms (ratio %s/matchbox %.2f)\n",
		mc / total / 1e6, peer, hc / total / 1e6, peer, (mc > 0 ? hc / mc : 0)
	for (i = 1; i <= rounds; i++) for (j = i + 1; j <= rounds; j++) if (ratio[j] < ratio[i]) { t = ratio[i]; ratio[i] = ratio[j]; ratio[j] = t }
	med = rounds % 2 ? ratio[(rounds + 1) / 2] : (ratio[rounds / 2] + ratio[rounds / 2 + 1]) / 2
	printf "median per-round ratio: %.2f\n", med
	printf "ratio matchbox/%s: %.2f\n", peer, m / h
	if (min != "" && m / h < min + 0) { printf "ratio below %s\n", min; exit 1 }
}' "$RESULTS" || rc=$?
log "load average at end: $(loadavg)"
exit $rc
