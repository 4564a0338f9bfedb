# bench/lib.sh: the shell preamble the benchmark scripts share. Source it
# (`. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`) after `set -euo pipefail`;
# then call bench_init NAME.
#
# It gives: log and die (messages on stderr, die prefixed by the script's
# name), loadavg, need (commands and their Debian packages), bench_workdir
# (a work directory, refusing tmpfs when fsync must cost), build_matchbox
# (honours MATCHBOX_BIN), netns_pair (two namespaces joined by a veth
# pair), wait_until (polling), bench_cgroup, cgroup_cpu_ns and in_cgroup
# (a server's CPU, threads and children included, from a cgroup), and one
# EXIT/INT/TERM trap that runs the handlers added with on_exit, last added
# first.

# bench_init NAME: the script's name for messages; sets REPO to the
# repository's root.
bench_init() {
	BENCH_NAME=$1
	REPO=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
	BENCH_EXIT=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

log() { printf '%s\n' "$*" >&2; }
die() { log "$BENCH_NAME: $*"; exit 1; }

# loadavg: the 1, 5 and 15 minute load averages.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# need COMMAND:PACKAGE...: dies naming the first missing command and its
# Debian package.
need() {
	local c
	for c in "$@"; do
		command -v "${c%%:*}" >/dev/null || die "missing ${c%%:*} (Debian package ${c##*:})"
	done
}

# on_exit COMMAND: run COMMAND (eval'd) when the script exits, before the
# handlers added earlier.
on_exit() { BENCH_EXIT=("$1" "${BENCH_EXIT[@]}"); }

bench_cleanup() {
	local h
	for h in "${BENCH_EXIT[@]}"; do eval "$h" || true; done
}

# bench_workdir PARENT PREFIX [fsync]: creates a work directory under
# PARENT and sets WORK to it and BENCH_FSTYPE to its file system; with
# "fsync", refuses tmpfs and ramfs (where fsync is free).
bench_workdir() {
	mkdir -p "$1"
	WORK=$(mktemp -d "$1/$2.XXXXXX")
	BENCH_FSTYPE=$(stat -f -c %T "$WORK")
	if [ "${3:-}" = fsync ]; then
		case $BENCH_FSTYPE in
		tmpfs | ramfs) rmdir "$WORK"; die "$1 is on $BENCH_FSTYPE, where fsync is free: pass -d DIR on a real disk" ;;
		esac
	fi
}

# keep_or_remove DIR: the end of a work directory: kept (and said) when
# KEEP=1, else removed.
keep_or_remove() {
	if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $1"; else rm -rf "$1"; fi
}

# build_matchbox OUT: sets MBX to $MATCHBOX_BIN, or builds ./cmd/matchbox
# into OUT.
build_matchbox() {
	if [ -n "${MATCHBOX_BIN:-}" ]; then
		MBX=$MATCHBOX_BIN
		return
	fi
	log "building matchbox"
	MBX=$1
	(cd "$REPO" && go build -o "$MBX" ./cmd/matchbox)
}

# netns_pair SRV CLI TAG SRV_CIDR CLI_CIDR: namespaces SRV and CLI, each
# with lo up, joined by a veth pair named vS (in SRV, holding SRV_CIDR) and
# vC (in CLI, holding CLI_CIDR); TAG makes the temporary link names unique.
# Both namespaces are deleted at exit.
netns_pair() {
	local srv=$1 cli=$2 tag=$3
	on_exit "ip netns del $cli 2>/dev/null; ip netns del $srv 2>/dev/null"
	ip netns add "$srv"
	ip netns add "$cli"
	ip -n "$srv" link set lo up
	ip -n "$cli" link set lo up
	ip link add "${tag}s" netns "$srv" type veth peer name "${tag}c" netns "$cli"
	ip -n "$srv" link set "${tag}s" name vS
	ip -n "$cli" link set "${tag}c" name vC
	ip -n "$srv" addr add "$4" dev vS
	ip -n "$cli" addr add "$5" dev vC
	ip -n "$srv" link set vS up
	ip -n "$cli" link set vC up
}

# wait_until TRIES DELAY COMMAND...: runs COMMAND until it succeeds, at most
# TRIES times, DELAY seconds apart; fails when it never did.
wait_until() {
	local tries=$1 delay=$2 i
	shift 2
	for ((i = 0; i < tries; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep "$delay"
	done
	return 1
}

# udp_listening NS PORT: something listens on UDP PORT in namespace NS.
udp_listening() { ip netns exec "$1" ss -Hlun "sport = :$2" | grep -q .; }

# bench_wrk_rate COMMAND...: runs COMMAND (a wrk invocation, with any
# prefix such as `ip netns exec` or `taskset`) and prints its requests/s;
# fails, logging wrk's output, when any answer was not 2xx or a socket
# failed, so that errors are never counted as served requests.
bench_wrk_rate() {
	local out
	out=$("$@") || { log "$*: exit $?"; log "$out"; return 1; }
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		log "$BENCH_NAME: wrk got errors:"; log "$out"
		return 1
	fi
	awk '/Requests\/sec/ {print $2}' <<<"$out"
}

# bench_ramp NAME ROUND RESULTS LABEL: runs the script's `step NAME ROUND
# RATE` (which sets S_RATE, exchanges/s achieved, and S_DROP, drops in %)
# from $START by $STEP up to $MAX, until drops pass 1 % and $EXTRA steps
# more; appends "best saturation" (the highest rate at <= 1 % drops, the
# highest rate at all) to RESULTS and prints the round's line, LABEL
# naming the server in it.
bench_ramp() {
	local name=$1 round=$2 results=$3 label=$4 rate=$START best=0 sat=0 over=-1
	while [ "$rate" -le "$MAX" ]; do
		step "$name" "$round" "$rate"
		if awk -v d="$S_DROP" 'BEGIN {exit !(d <= 1)}'; then
			[ "$S_RATE" -gt "$best" ] && best=$S_RATE
		elif [ "$over" -lt 0 ]; then
			over=0
		fi
		[ "$S_RATE" -gt "$sat" ] && sat=$S_RATE
		if [ "$over" -ge 0 ]; then
			[ "$over" -ge "$EXTRA" ] && break
			over=$((over + 1))
		fi
		rate=$((rate + STEP))
	done
	echo "$best $sat" >>"$results"
	printf 'round %s %s highest rate at <= 1%% drops %s/s, saturation %s/s\n' "$round" "$label" "$best" "$sat"
}

# bench_cgroup VAR NAME: creates a cgroup NAME for CPU accounting (cgroup
# v1 cpuacct, else cgroup v2) and sets VAR to its path, or to "" when none
# can be made here. The cgroup is removed at exit. A process started in it
# (in_cgroup) brings its threads and children: its CPU, unlike wall time,
# does not depend much on what else the machine runs.
bench_cgroup() {
	local var=$1 name=$2 base=''
	if [ -w /sys/fs/cgroup/cpuacct ] && [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
		base=/sys/fs/cgroup/cpuacct
	elif [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] && [ -w /sys/fs/cgroup ]; then
		base=/sys/fs/cgroup
	fi
	printf -v "$var" '%s' ''
	[ -n "$base" ] && mkdir "$base/$name" 2>/dev/null || return 0
	# Its processes may take a moment to exit.
	on_exit "for _ in \$(seq 1 20); do rmdir '$base/$name' 2>/dev/null && break; sleep 0.1; done"
	printf -v "$var" '%s' "$base/$name"
}

# cgroup_cpu_ns CGROUP: the CPU nanoseconds used in CGROUP so far (0 when
# CGROUP is "").
cgroup_cpu_ns() {
	if [ -z "$1" ]; then echo 0
	elif [ -f "$1/cpuacct.usage" ]; then cat "$1/cpuacct.usage"
	else awk '$1 == "usage_usec" { print $2 * 1000 }' "$1/cpu.stat"; fi
}

# in_cgroup CGROUP CMD...: execs CMD inside CGROUP (as is when CGROUP is
# ""). Run it as a background job: $! is then CMD's own PID.
in_cgroup() {
	local d=$1
	shift
	exec sh -c 'if [ -n "$1" ]; then echo $$ >"$1/cgroup.procs" || exit 99; fi; shift; exec "$@"' sh "$d" "$@"
}

# proc_cpu_ns PID: the CPU nanoseconds process PID used so far, all its
# threads and its waited-for children (utime, stime, cutime, cstime of
# /proc/PID/stat), to check a cgroup's figure against.
proc_cpu_ns() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13 + $14 + $15) * 1e9 / hz }' "/proc/$1/stat"
}
