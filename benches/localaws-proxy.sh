#!/usr/bin/env bash
# localaws's ALB stand-in, measured two ways against one `server` task, same machine, same run:
#
# 1. overhead: loadprobe at a fixed rate through the listener vs straight at the task
#    (added p50 and p99);
# 2. throughput: wrk through the listener vs through nginx configured as a keep-alive reverse
#    proxy to the same task (Debian packages `wrk`, `nginx`).
#
#   benches/localaws-proxy.sh [RATE] [SECONDS] [ROUNDS]     (defaults: 1000 10 3)
#
# Criterion (exit 1 when it fails): no probe run records a failed request or a probe fault; the
# figures themselves are reported, not judged.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-1000} secs=${2:-10} rounds=${3:-3}
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk nginx python3
build server localaws loadprobe

cat > "$work/stack.toml" <<TOML
time_scale = 10.0
[cluster]
instances = 1
[images.server]
command = "$bin/server"
environment = { LOG_FORMAT = "json" }
[[task_definitions]]
family = "web"
[[task_definitions.containerDefinitions]]
name = "web"
image = "server"
portMappings = [{ containerPort = 8080 }]
[[target_groups]]
name = "tg"
health_check = { path = "/ready", interval = 5, timeout = 2, healthy_threshold = 2 }
[[load_balancers]]
name = "lb"
[[load_balancers.listeners]]
name = "production"
port = 0
forward = [{ target_group = "tg" }]
[[services]]
name = "web"
task_definition = "web"
desired_count = 1
load_balancer = { target_group = "tg", container_name = "web", container_port = 8080 }
TOML

"$bin/localaws" up --stack "$work/stack.toml" --state-dir "$work/state" 2>"$work/localaws.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "Ctrl-C stops" "$work/localaws.log" && break; sleep 0.1; done
lb=$(grep -o 'production: http://[0-9.:]*/' "$work/localaws.log" | sed 's/production: //')
task=$(grep -o 'started on [0-9.:]*' "$work/localaws.log" | head -1 | sed 's/started on //')
[ -n "$lb" ] && [ -n "$task" ] || { cat "$work/localaws.log" >&2; exit 1; }
for _ in $(seq 100); do grep -q "healthy in tg" "$work/localaws.log" && break; sleep 0.1; done
echo "listener $lb -> task http://$task/"

# nginx as a keep-alive reverse proxy to the same task.
nport=$(free_port)
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server $task; keepalive 64; }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx.log" &
pids+=($!)
wait_up "$nport"

probe() { # url out.json
  local status=0
  "$bin/loadprobe" "$1" --rate "$rate" --duration "${secs}s" --connections 32 --quiet --json "$2" >/dev/null || status=$?
  (( status <= 1 )) || { echo "FAIL: loadprobe exit $status against $1" >&2; exit 1; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_us"]; print(l["p50"], l["p99"], r["errors"]["total"])' "$2"
}
errors_seen=0
d50=() d99=() l50=() l99=() n50=() n99=()
for r in $(seq "$rounds"); do
  # Not `< <(probe ...)`: a failure must end this script, not a subshell.
  probe "http://$task/" "$work/direct.json" >"$work/direct.txt"
  probe "$lb" "$work/lb.json" >"$work/lb.txt"
  probe "http://127.0.0.1:$nport/" "$work/nginx.json" >"$work/nginx.txt"
  read -r a b e1 <"$work/direct.txt"
  read -r c d e2 <"$work/lb.txt"
  read -r e f e3 <"$work/nginx.txt"
  d50+=("$a"); d99+=("$b"); l50+=("$c"); l99+=("$d"); n50+=("$e"); n99+=("$f")
  errors_seen=$((errors_seen + e1 + e2 + e3))
  echo "round $r: direct p50 ${a}us p99 ${b}us (errors $e1) | listener p50 ${c}us p99 ${d}us (errors $e2) | nginx p50 ${e}us p99 ${f}us (errors $e3)"
done
D50=$(printf '%s\n' "${d50[@]}" | median); D99=$(printf '%s\n' "${d99[@]}" | median)
L50=$(printf '%s\n' "${l50[@]}" | median); L99=$(printf '%s\n' "${l99[@]}" | median)
N50=$(printf '%s\n' "${n50[@]}" | median); N99=$(printf '%s\n' "${n99[@]}" | median)

rps() { wrk -t1 -c32 -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
ng=() la=()
for r in $(seq "$rounds"); do
  ng+=("$(rps "http://127.0.0.1:$nport/")")
  la+=("$(rps "$lb")")
  echo "round $r: nginx ${ng[-1]} req/s | localaws ${la[-1]} req/s"
done
NG=$(printf '%s\n' "${ng[@]}" | median); LA=$(printf '%s\n' "${la[@]}" | median)

echo
echo "| measure (median of $rounds) | direct to task | via nginx | via localaws listener | localaws adds |"
echo "| --- | ---: | ---: | ---: | ---: |"
awk -v a="$D50" -v n="$N50" -v b="$L50" 'BEGIN { printf "| p50 at %s req/s | %d us | %d us | %d us | %+d us |\n", "'"$rate"'", a, n, b, b - a }'
awk -v a="$D99" -v n="$N99" -v b="$L99" 'BEGIN { printf "| p99 at %s req/s | %d us | %d us | %d us | %+d us |\n", "'"$rate"'", a, n, b, b - a }'
awk -v a="$NG" -v b="$LA" 'BEGIN { printf "| max req/s (wrk -t1 -c32) | | %.0f | %.0f | %.2fx nginx |\n", a, b, b / a }'
(( errors_seen == 0 )) || { echo "FAIL: $errors_seen failed requests across the probe runs" >&2; exit 1; }
