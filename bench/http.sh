#!/usr/bin/env bash
# Served requests per second of matchbox's boot endpoints under a boot
# storm's workload, against nginx serving the same bytes as static files,
# side by side in one run on this machine:
#   /ipxe?mac=...      every request names another of the groups' MACs; the
#                      profile's kernel arguments are templates of the
#                      group's metadata
#   /ignition?mac=...  a Butane template rendered per machine
# Rounds alternate which server goes first; every round is printed, then the
# median of each server and the median ratio. A non-2xx answer or a socket
# error fails the run.
#
#   bash bench/http.sh   # BENCH_GROUPS=10000 ROUNDS=3 DURATION=10s CONNECTIONS=32 THREADS=1
#   ENDPOINTS=ipxe bash bench/http.sh   # one endpoint only
#   PROFILE=DIR bash bench/http.sh   # also writes matchbox's CPU profile of
#                                    # round 1 of each endpoint to DIR/ENDPOINT.pprof
#
# The machine may be shared: each round prints the load average it ran at.
#
# Needs wrk and nginx (Debian: wrk nginx-light), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
GROUPS_N=${BENCH_GROUPS:-10000}
ROUNDS=${ROUNDS:-3}
ENDPOINTS=${ENDPOINTS:-ipxe ignition}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
. bench/lib.sh
bench_init bench/http.sh
need wrk:wrk nginx:nginx-light curl:curl python3:python3

bench_workdir "${TMPDIR:-/tmp}" tmp
work=$WORK
chmod 755 "$work"  # nginx workers run as an unprivileged user
on_exit 'rm -rf "$work"'
pids=()
on_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null'

# Each server gets one core and wrk the other, so that neither server
# competes with the load generator (set PIN=0 to let the scheduler decide).
PIN_SERVER="" PIN_CLIENT=""
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER="taskset -c 0" PIN_CLIENT="taskset -c 1"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building matchbox"
go build -o "$work/matchbox" ./cmd/matchbox

data="$work/data"
mkdir -p "$data/profiles" "$data/groups" "$data/ignition"
cat > "$data/profiles/node.yaml" <<'YAML'
id: node
boot:
  kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz
  initrd: [/assets/flatcar/flatcar_production_pxe_image.cpio.gz]
  args: [initrd=flatcar_production_pxe_image.cpio.gz, "flatcar.config.url=http://matchbox:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}", flatcar.first_boot=yes, "hostname={{.hostname}}", "rack={{.rack}}", console=ttyS0]
ignition_id: node.yaml
YAML
cat > "$data/ignition/node.yaml" <<'YAML'
variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyBenchmarkKeyBenchmarkKey00 bench
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: {{.hostname}}
    - path: /etc/rack
      mode: 0644
      contents:
        inline: "{{.rack}}"
systemd:
  units:
    - name: node-agent.service
      enabled: true
      contents: |
        [Service]
        Environment=NODE={{.hostname}}
        ExecStart=/usr/bin/sleep infinity
        [Install]
        WantedBy=multi-user.target
YAML
# One group per MAC, with the metadata the templates read; macs.txt lists
# the MACs in the hyphenated form the requests use.
python3 - "$data/groups" "$GROUPS_N" "$work/macs.txt" <<'PY'
import sys, os
d, n, macs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(macs, "w") as out:
    for i in range(n):
        mac = "02:00:00:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        with open(os.path.join(d, "g%05d.json" % i), "w") as f:
            f.write('{"id":"g%05d","profile":"node","selector":{"mac":"%s"},"metadata":{"hostname":"node-%05d.example.com","rack":"r%02d"}}' % (i, mac, i, i % 40))
        out.write(mac.replace(":", "-") + "\n")
PY

mport=$(free_port)
debug=()
if [ -n "${PROFILE:-}" ]; then
  mkdir -p "$PROFILE"
  dport=$(free_port)
  debug=(--debug-addr "127.0.0.1:$dport")
fi
$PIN_SERVER "$work/matchbox" serve --data-dir "$data" --http-addr "127.0.0.1:$mport" "${debug[@]}" --log-level warn >"$work/matchbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$mport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# nginx serves, for every MAC, the bytes matchbox answers for it.
echo "fetching matchbox's answer for each of $GROUPS_N MACs"
mkdir -p "$work/www/ipxe" "$work/www/ignition"
python3 - "$mport" "$work/macs.txt" "$work/www" $ENDPOINTS <<'PY' || { cat "$work/matchbox.log"; exit 1; }
import sys, http.client, concurrent.futures
port, macs, www, eps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
macs = open(macs).read().split()
def fetch(part):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    for mac in part:
        for ep in eps:
            c.request("GET", "/%s?mac=%s" % (ep, mac))
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit("matchbox answered %d to /%s?mac=%s: %s" % (r.status, ep, mac, body[:200]))
            open("%s/%s/%s" % (www, ep, mac), "wb").write(body)
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    list(ex.map(fetch, [macs[i::4] for i in range(4)]))
PY

nport=$(free_port)
mkdir -p "$work/nginx"
# nginx at its best keeps every file open in its cache, but each cached
# file holds a descriptor: the cache must leave room under the process's
# file limit for the connections and logs, or accept4 fails with EMFILE
# once both endpoints' files are cached. One endpoint's files (one per
# MAC) must fit, so that rotating over the MACs never evicts a file the
# next request needs.
cache=$(( $(ulimit -n) - 2 * 1024 - 128 ))
if [ "$cache" -gt $((2 * GROUPS_N)) ]; then cache=$((2 * GROUPS_N)); fi
[ "$cache" -ge "$GROUPS_N" ] || die "open file limit $(ulimit -n) too low for nginx to cache $GROUPS_N files (raise ulimit -n)"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  open_file_cache max=$cache inactive=60s;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
    location = /ipxe { try_files /ipxe/\$arg_mac =404; }
    location = /ignition { default_type application/json; try_files /ignition/\$arg_mac =404; }
  }
}
CONF
$PIN_SERVER nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
first=$(head -1 "$work/macs.txt")
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$nport/ipxe?mac=$first" >/dev/null 2>&1 && break; sleep 0.1; done
for ep in $ENDPOINTS; do
  for mac in "$first" "$(tail -1 "$work/macs.txt")"; do
    cmp -s <(curl -fs "http://127.0.0.1:$mport/$ep?mac=$mac") <(curl -fs "http://127.0.0.1:$nport/$ep?mac=$mac") ||
      { echo "nginx serves different bytes for /$ep?mac=$mac"; cat "$work/nginx/error.log"; exit 1; }
  done
done

# One wrk script for both servers: each request names the next MAC of the
# list (threads start at different offsets).
cat > "$work/rotate.lua" <<LUA
local macs = {}
for line in io.lines("$work/macs.txt") do macs[#macs + 1] = line end
local endpoint = os.getenv("BENCH_ENDPOINT")
local i = 0
local thread_id = 0
setup = function(thread) thread:set("offset", thread_id * 7919); thread_id = thread_id + 1 end
request = function()
  i = i + 1
  local mac = macs[((i + (offset or 0)) % #macs) + 1]
  return wrk.format("GET", "/" .. endpoint .. "?mac=" .. mac)
end
LUA

rate() { # endpoint port [profile-file] -> requests/s; fails on any non-2xx answer or socket error
  local out prof=""
  if [ -n "${3:-}" ]; then
    curl -fs -o "$3" "http://127.0.0.1:$dport/debug/pprof/profile?seconds=$(( ${DURATION%s} - 2 ))" & prof=$!
  fi
  local ok=0
  out=$(BENCH_ENDPOINT=$1 bench_wrk_rate $PIN_CLIENT wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$work/rotate.lua" "http://127.0.0.1:$2") || ok=$?
  [ -z "$prof" ] || wait "$prof" || echo "bench/http.sh: no profile of /$1" >&2
  if [ "$ok" != 0 ]; then
    local who=matchbox
    if [ "$2" = "$nport" ]; then who=nginx; fi
    echo "bench/http.sh: $who (port $2) answered /$1 with errors" >&2
    if [ "$who" = nginx ]; then tail -5 "$work/nginx/error.log" >&2; else tail -5 "$work/matchbox.log" >&2; fi
    return 1
  fi
  echo "$out"
}
echo "groups=$GROUPS_N rounds=$ROUNDS duration=$DURATION connections=$CONNECTIONS threads=$THREADS pinned=${PIN_SERVER:-no} endpoints=$ENDPOINTS"
for ep in $ENDPOINTS; do  # warm up
  echo "/$ep answers $(wc -c < "$work/www/$ep/$first") bytes"
  BENCH_ENDPOINT=$ep wrk -t1 -c4 -d2s -s "$work/rotate.lua" "http://127.0.0.1:$mport" >/dev/null
  BENCH_ENDPOINT=$ep wrk -t1 -c4 -d2s -s "$work/rotate.lua" "http://127.0.0.1:$nport" >/dev/null
done
results="$work/results.txt"
for r in $(seq 1 "$ROUNDS"); do
  for ep in $ENDPOINTS; do
    prof=""
    if [ -n "${PROFILE:-}" ] && [ "$r" = 1 ]; then prof="$PROFILE/$ep.pprof"; fi
    if [ $((r % 2)) = 1 ]; then
      m=$(rate "$ep" "$mport" "$prof"); n=$(rate "$ep" "$nport"); order="matchbox first"
    else
      n=$(rate "$ep" "$nport"); m=$(rate "$ep" "$mport" "$prof"); order="nginx first"
    fi
    echo "$ep $m $n" >> "$results"
    printf 'round %d /%-8s matchbox %10.0f req/s  nginx %10.0f req/s  ratio %.2f  (%s; load average %s)\n' "$r" "$ep" "$m" "$n" "$(python3 -c "print($m/$n)")" "$order" "$(loadavg)"
  done
done
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
goal = {"ipxe": 0.6, "ignition": 0.5}
for ep in sorted({r[0] for r in rows}):
    m = [float(r[1]) for r in rows if r[0] == ep]
    n = [float(r[2]) for r in rows if r[0] == ep]
    ratios = [a / b for a, b in zip(m, n)]
    print("median /%-8s matchbox %10.0f req/s  nginx %10.0f req/s  ratio %.2f (rounds %.2f-%.2f; goal >= %.1f)" % (
        ep, statistics.median(m), statistics.median(n), statistics.median(ratios), min(ratios), max(ratios), goal[ep]))
PY
