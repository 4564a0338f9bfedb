#!/usr/bin/env bash
# Start-up time and memory of `matchbox serve` at fleet scale: a database
# holding MACHINES machines (each discovered by a boot event, so with a
# timeline), LEASES bound DHCP leases, and a data directory of BENCH_GROUPS groups
# (one per MAC, with metadata read by a profile's templated kernel
# arguments) plus a Butane template.
#
#   bash bench/startup.sh   # MACHINES=100000 LEASES=100000 BENCH_GROUPS=10000 RUNS=3
#
# Start-up is the time from exec to the first 200 of /healthz; RSS is
# VmRSS (and its peak, VmHWM) two seconds later. The first start imports the
# data directory into the database; the next RUNS starts find it imported
# (a restart). Goals: RSS < 200 MiB, start < 5 s. The machine may be
# shared: each run prints the load average it ran at. The database is
# written under BENCH_DIR (default /var/tmp: a disk, not tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINES=${MACHINES:-100000}
LEASES=${LEASES:-100000}
GROUPS_N=${BENCH_GROUPS:-10000}
RUNS=${RUNS:-3}
. bench/lib.sh
bench_init bench/startup.sh
need curl:curl

bench_workdir "${BENCH_DIR:-/var/tmp}" matchbox-startup
work=$WORK
on_exit 'rm -rf "$work"'
pid=""
on_exit '[ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null'

echo "building matchbox and gendb"
go build -o "$work/matchbox" ./cmd/matchbox
go build -o "$work/gendb" ./bench/gendb
echo "writing $MACHINES machines, $LEASES leases, $GROUPS_N groups"
t0=$(date +%s.%N)
"$work/gendb" -db "$work/matchbox.db" -data-dir "$work/data" -machines "$MACHINES" -leases "$LEASES" -groups "$GROUPS_N"
echo "written in $(python3 -c "print(f'{$(date +%s.%N)-$t0:.1f}')") s; database $(du -m "$work/matchbox.db" | cut -f1) MiB"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
results="$work/results.txt"
for run in $(seq 0 "$RUNS"); do
  start=$(date +%s.%N)
  "$work/matchbox" serve --data-dir "$work/data" --db "$work/matchbox.db" --assets-dir - \
    --http-addr "127.0.0.1:$port" --log-level warn >"$work/serve.log" 2>&1 &
  pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; do
    kill -0 "$pid" 2>/dev/null || { echo "matchbox serve exited:"; cat "$work/serve.log"; exit 1; }
    sleep 0.02
  done
  ready=$(python3 -c "print(f'{$(date +%s.%N)-$start:.2f}')")
  sleep 2
  # A machine of the database and a group of the data directory answer.
  curl -fs -o /dev/null "http://127.0.0.1:$port/ipxe?mac=02:10:00:00:00:01" || { echo "/ipxe failed"; cat "$work/serve.log"; exit 1; }
  rss=$(awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  what="restart"
  [ "$run" = 0 ] && what="first start (imports the data directory)"
  printf 'run %d: start %5.2f s  RSS %4d MiB  peak %4d MiB  (%s; load average %s)\n' "$run" "$ready" "$rss" "$hwm" "$what" "$(loadavg)"
  [ "$run" = 0 ] || echo "$ready $rss $hwm" >> "$results"
done
python3 - "$results" <<'PY'
import sys, statistics
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
start, rss, hwm = (statistics.median(c) for c in zip(*rows))
print("median of %d restarts: start %.2f s (goal < 5 s: %s), RSS %.0f MiB (goal < 200 MiB: %s), peak %.0f MiB" % (
    len(rows), start, "met" if start < 5 else "MISSED", rss, "met" if rss < 200 else "MISSED", hwm))
PY
