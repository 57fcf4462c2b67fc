#!/usr/bin/env bash
# Throughput of `server` against a minimal hyper hello-world, same machine, same run, with wrk
# (Debian package `wrk`); then exec-to-ready time and idle RSS.
#
#   benches/server-throughput.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults: 3 10 32)
#
# Rounds alternate baseline and server so drift on a shared machine hits both alike; the
# figure is the median over rounds. Both servers run the same tokio multi-thread runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-10} conns=${3:-32}
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk python3
build server benches

hp=$(free_port); sp=$(free_port)
"$bin/hello-hyper" "127.0.0.1:$hp" >/dev/null & pids+=($!)
PORT=$sp BIND=127.0.0.1 LOG_FORMAT=json "$bin/server" 2>/dev/null & pids+=($!)
wait_up "$hp"; wait_up "$sp"

rps() { wrk -t1 -c"$conns" -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
hello=() page=() health=()
for r in $(seq "$rounds"); do
  hello+=("$(rps "http://127.0.0.1:$hp/")")
  page+=("$(rps "http://127.0.0.1:$sp/")")
  health+=("$(rps "http://127.0.0.1:$sp/health")")
  echo "round $r: hello-hyper ${hello[-1]}  server / ${page[-1]}  server /health ${health[-1]}"
done
h=$(printf '%s\n' "${hello[@]}" | median)
p=$(printf '%s\n' "${page[@]}" | median)
k=$(printf '%s\n' "${health[@]}" | median)
echo
echo "| target (wrk -t1 -c$conns -d${secs}s, median of $rounds) | req/s | vs hello-hyper |"
echo "| --- | ---: | ---: |"
awk -v h="$h" -v p="$p" -v k="$k" 'BEGIN {
  printf "| hello-hyper (baseline) | %.0f | 1.00x |\n", h
  printf "| server GET / (HTML page) | %.0f | %.2fx |\n", p, p / h
  printf "| server GET /health | %.0f | %.2fx |\n", k, k / h
}'
echo
"$bin/startup" "$bin/server" 20 | tail -2
