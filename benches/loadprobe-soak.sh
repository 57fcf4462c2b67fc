#!/usr/bin/env bash
# Long-run check of loadprobe: RATE requests/s for SECONDS against `hello-hyper`, printing the
# probe's RSS over time. The claim it checks: nothing is kept per request. The report's timeline
# keeps one small record per interval (100 ms by default: counts, p50/p99/max, kinds, versions,
# tasks), so RSS grows with the run's duration, not with its requests: 600 s at 5,000 req/s is
# 6,000 intervals and 3,000,000 requests, and measured +0.8 MB (about 140 bytes per interval,
# 0.3 bytes per request) — a flat-within-10 % check failed on exactly that.
#
#   benches/loadprobe-soak.sh [SECONDS] [RATE] [CONNECTIONS]   (defaults: 600 5000 32)
#
# Criterion (exit 1 when it fails): the run passes (no failed request, no probe fault); from the
# end of warm-up (a tenth of the run, at least 10 s) to the end, RSS grows by less than 1 byte per
# request (a per-request record of even one u64 would be 8) and by at most 512 bytes per interval;
# the peak stays under 64 MB. Exit 2: bad arguments or a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600} rate=${2:-5000} conns=${3:-32}
if ! [[ $secs =~ ^[0-9]+$ ]] || (( secs < 30 )); then
  echo "SECONDS must be a whole number, at least 30: got '$secs'" >&2
  exit 2
fi
# shellcheck source=benches/lib.sh
source benches/lib.sh
need python3
build loadprobe benches

port=$(free_port)
"$bin/hello-hyper" "127.0.0.1:$port" >/dev/null &
pids+=($!)
wait_up "$port"

step=$(( secs >= 300 ? 30 : 5 ))
warm=$(( secs / 10 > 10 ? secs / 10 : 10 ))
echo "loadprobe --rate $rate --duration ${secs}s --connections $conns against hello-hyper; RSS every ${step}s"
"$bin/loadprobe" --quiet --rate "$rate" --duration "${secs}s" --connections "$conns" \
  --json "$work/soak.json" --hdr-log "$work/soak.hlog" "http://127.0.0.1:$port/" &
probe=$!
pids+=("$probe")
start=$SECONDS
ref="" last="" peak=0 next=0
while kill -0 "$probe" 2>/dev/null; do
  kb=$(awk '/^VmRSS/ {print $2}' "/proc/$probe/status" 2>/dev/null || true)
  t=$((SECONDS - start))
  if [[ -n "$kb" ]]; then
    last=$kb
    (( kb > peak )) && peak=$kb
    [[ -z "$ref" ]] && (( t >= warm )) && ref=$kb
    if (( t >= next )); then
      printf 't=%4ds  RSS %6.1f MB\n' "$t" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')"
      next=$((next + step))
    fi
  fi
  sleep 1
done
status=0
wait "$probe" || status=$?
[[ -n "$ref" && -n "$last" ]] || { echo "FAIL: the probe ended before warm-up (${warm}s), exit $status" >&2; exit 1; }

python3 - "$work/soak.json" "$ref" "$last" "$peak" "$warm" "$status" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ref, last, peak = (float(x) / 1024 for x in sys.argv[2:5])
warm, status = int(sys.argv[5]), int(sys.argv[6])
lag, lat = r["schedule_lag_us"], r["latency_us"]
growth = (last - ref) / ref
interval_ms = r.get("interval_ms") or 100
after = max(r["config"]["duration_ms"] / 1000 - warm, 1)
grown = max(last - ref, 0) * 1024 * 1024
per_request = grown / max(r["requests"] * after / (r["config"]["duration_ms"] / 1000), 1)
per_interval = grown / max(after * 1000 / interval_ms, 1)
checks = [
    ("probe verdict (exit %d)" % status, r["verdict"], r["verdict"] == "pass" and status == 0),
    ("requests / errors / missing results",
     "%d / %d / %d" % (r["requests"], r["errors"]["total"], r.get("missing_results", 0)),
     r["errors"]["total"] == 0 and r.get("missing_results", 0) == 0),
    ("achieved rate", "%.1f req/s" % r["achieved_rate"], True),
    ("schedule lag p99 / max", "%d / %d us" % (lag["p99"], lag["max"]), True),
    ("latency p50 / p99 / max", "%.2f / %.2f / %.2f ms" % (lat["p50"] / 1e3, lat["p99"] / 1e3, lat["max"] / 1e3), True),
    ("RSS after %d s / at end (growth)" % warm, "%.1f / %.1f MB (%+.1f%%)" % (ref, last, 100 * growth), True),
    ("RSS growth per request after warm-up", "%.2f bytes" % per_request, per_request < 1),
    ("RSS growth per %d ms interval" % interval_ms, "%.0f bytes" % per_interval, per_interval <= 512),
    ("RSS peak", "%.1f MB" % peak, peak < 64),
]
print("| loadprobe --rate %s, %d s | value | check |" % (r["config"]["rate"], r["config"]["duration_ms"] // 1000))
print("| --- | ---: | --- |")
for name, value, ok in checks:
    print("| %s | %s | %s |" % (name, value, "pass" if ok else "FAIL"))
failed = [name for name, _, ok in checks if not ok]
if failed:
    print("FAIL: " + "; ".join(failed), file=sys.stderr)
    sys.exit(1)
PY
