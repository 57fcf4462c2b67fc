#!/usr/bin/env bash
# Max rate of `loadprobe --rate max` (32 keep-alive connections, recording everything) against
# the minimal hyper server `hello-hyper`, side by side with wrk in the same run.
#
#   benches/loadprobe-max-rate.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults: 5 10 32)
#   TLS=1 benches/loadprobe-max-rate.sh ...     the same over HTTPS (hello-hyper --tls, rustls;
#                                              wrk on OpenSSL; the probe with --ca-file)
#
# Rounds alternate wrk -t1, wrk -t2 and the probe against the same server process, so drift on
# a shared 2-core machine hits all alike; figures are medians over rounds and the probe is
# compared with the better wrk. Client and server compete for the same cores, for wrk as for
# the probe. Criterion (exit 1 when it fails): the probe's median is at least MIN_RATIO (default
# 0.95 plain, noise on a shared machine; 0.9 over TLS, where both clients' TLS stacks are part
# of what is compared) of the better wrk's, with no failed request.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10} conns=${3:-32}
if [[ ${TLS:-0} == 1 ]]; then min_ratio=${MIN_RATIO:-0.9}; else min_ratio=${MIN_RATIO:-0.95}; fi
# shellcheck source=benches/loadprobe-lib.sh
source benches/loadprobe-lib.sh

wrk_rps() { wrk -t"$1" -c"$conns" -d"${secs}s" "$url" | awk '/Requests\/sec/ {print $2}'; }
probe_rps() {
  "$bin/loadprobe" --quiet --rate max --connections "$conns" --duration "${secs}s" \
    --json "$work/max.json" --hdr-log "$work/max.hlog" "${probe_args[@]}" "$url" || {
    echo "probe failed (exit $?); its report:" >&2; cat "$work/max.json" >&2; exit 1; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f %d %d" % (r["achieved_rate"], r["requests"], r["errors"]["total"]))' "$work/max.json"
}

w1=() w2=() pr=()
for r in $(seq "$rounds"); do
  w1+=("$(wrk_rps 1)")
  w2+=("$(wrk_rps 2)")
  # Not `< <(probe_rps)`: a failure must end this script, not a subshell.
  probe_rps >"$work/round.txt"
  read -r rate requests errors <"$work/round.txt"
  pr+=("$rate")
  (( errors == 0 )) || { echo "FAIL: the probe recorded $errors failed requests" >&2; exit 1; }
  echo "round $r: wrk -t1 ${w1[-1]}  wrk -t2 ${w2[-1]}  loadprobe $rate req/s ($requests requests recorded, $errors errors)"
done
m1=$(printf '%s\n' "${w1[@]}" | median)
m2=$(printf '%s\n' "${w2[@]}" | median)
mp=$(printf '%s\n' "${pr[@]}" | median)
echo
echo "| client (${url%%:*}, -c$conns, ${secs}s, keep-alive, median of $rounds) | req/s | vs best wrk |"
echo "| --- | ---: | ---: |"
awk -v a="$m1" -v b="$m2" -v p="$mp" 'BEGIN {
  best = (a > b) ? a : b
  printf "| wrk -t1 | %.0f | %.2fx |\n", a, a / best
  printf "| wrk -t2 | %.0f | %.2fx |\n", b, b / best
  printf "| loadprobe --rate max (records every request) | %.0f | %.2fx |\n", p, p / best
}'
awk -v a="$m1" -v b="$m2" -v p="$mp" -v min="$min_ratio" 'BEGIN {
  best = (a > b) ? a : b
  if (p < min * best) {
    printf "FAIL: loadprobe %.0f req/s is %.2fx the better wrk, below %.2fx\n", p, p / best, min > "/dev/stderr"
    exit 1
  }
}'
