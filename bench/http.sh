#!/usr/bin/env bash
# Served requests per second of /ipxe?mac=... with 10,000 groups, against
# nginx serving the same bytes as a static file, in one run on this machine.
#
#   bash bench/http.sh            # BENCH_GROUPS=10000 DURATION=10s CONNECTIONS=32 THREADS=1
#
# Needs wrk and nginx (Debian: wrk nginx-light). Prints both rates and the
# ratio matchbox/nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
GROUPS_N=${BENCH_GROUPS:-10000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
for bin in wrk nginx curl; do
  command -v "$bin" >/dev/null || { echo "bench/http.sh: $bin is missing (apt-get install wrk nginx-light curl)" >&2; exit 1; }
done

work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run as an unprivileged user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

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
mkdir -p "$data/profiles" "$data/groups"
cat > "$data/profiles/node.yaml" <<'YAML'
id: node
boot:
  kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz
  initrd: [/assets/flatcar/flatcar_production_pxe_image.cpio.gz]
  args: [initrd=flatcar_production_pxe_image.cpio.gz, "flatcar.config.url=http://matchbox:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}", flatcar.first_boot=yes, console=ttyS0]
YAML
printf 'id: default\nprofile: node\n' > "$data/groups/default.yaml"
python3 - "$data/groups" "$GROUPS_N" <<'PY'
import sys, os
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n - 1):
    mac = "02:00:00:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)
    with open(os.path.join(d, "g%05d.json" % i), "w") as f:
        f.write('{"id":"g%05d","profile":"node","selector":{"mac":"%s"},"metadata":{"i":%d}}' % (i, mac, i))
PY
target_i=$((GROUPS_N / 2))
mac=$(printf '02-00-00-%02x-%02x-%02x' $((target_i >> 16 & 255)) $((target_i >> 8 & 255)) $((target_i & 255)))
path="/ipxe?mac=$mac"

mport=$(free_port)
$PIN_SERVER "$work/matchbox" serve --data-dir "$data" --http-addr "127.0.0.1:$mport" --log-level warn >"$work/matchbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$mport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$mport$path" > "$work/ipxe.txt" || { echo "matchbox did not answer"; cat "$work/matchbox.log"; exit 1; }

nport=$(free_port)
mkdir -p "$work/www" "$work/nginx"
cp "$work/ipxe.txt" "$work/www/ipxe"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
    location = /ipxe { try_files /ipxe =404; }
  }
}
CONF
$PIN_SERVER nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$nport$path" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$nport$path" > "$work/nginx.txt" || true
cmp -s "$work/ipxe.txt" "$work/nginx.txt" || { echo "nginx serves different bytes"; cat "$work/nginx/error.log"; exit 1; }

rate() { # url -> requests/s
  $PIN_CLIENT wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'
}
echo "groups=$GROUPS_N duration=$DURATION connections=$CONNECTIONS threads=$THREADS response=$(wc -c < "$work/ipxe.txt")B pinned=${PIN_SERVER:-no}"
wrk -t1 -c4 -d2s "http://127.0.0.1:$mport$path" >/dev/null  # warm up
wrk -t1 -c4 -d2s "http://127.0.0.1:$nport$path" >/dev/null
m=$(rate "http://127.0.0.1:$mport$path")
n=$(rate "http://127.0.0.1:$nport$path")
ratio=$(python3 -c "print(f'{$m/$n:.2f}')")
echo "matchbox /ipxe?mac=...: $m req/s"
echo "nginx static file:      $n req/s"
echo "ratio matchbox/nginx:   $ratio (target >= 0.5)"
