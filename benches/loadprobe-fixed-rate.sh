#!/usr/bin/env bash
# Fixed-rate precision and memory of loadprobe: 5,000 requests/s for 60 s against `hello-hyper`.
# Reports the probe's own schedule lag (p99 must stay under 1 ms), latency, and its RSS sampled
# every second (flat: the same ±10 % at 10 s and at the end; under 64 MB). wrk has no fixed-rate
# mode; a short wrk run is shown as the capacity the 5,000/s sit under. Exits 1 when a check
# fails (errors, schedule lag, memory not flat or too large), so a regression cannot pass
# unnoticed.
#
#   benches/loadprobe-fixed-rate.sh [RATE] [SECONDS] [CONNECTIONS]   (defaults: 5000 60 32)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000} secs=${2:-60} conns=${3:-32}
(( secs >= 15 )) || { echo "need at least 15 s to compare RSS at 10 s and at the end" >&2; exit 2; }
# shellcheck source=benches/loadprobe-lib.sh
source benches/loadprobe-lib.sh

capacity=$(wrk -t2 -c"$conns" -d3s "$url" | awk '/Requests\/sec/ {print $2}')

"$bin/loadprobe" --quiet --rate "$rate" --duration "${secs}s" --connections "$conns" \
  --json "$work/fixed.json" --hdr-log "$work/fixed.hlog" "${probe_args[@]}" "$url" & probe=$!
pids+=("$probe")
rss=()
while kill -0 "$probe" 2>/dev/null; do
  kb=$(awk '/^VmRSS/ {print $2}' "/proc/$probe/status" 2>/dev/null || true)
  [[ -n "$kb" ]] && rss+=("$kb")
  sleep 1
done
status=0; wait "$probe" || status=$?
(( status == 0 )) || echo "probe exit $status: the run itself failed (see the errors row)" >&2
(( ${#rss[@]} >= 12 )) || { echo "too few RSS samples: ${#rss[@]}" >&2; exit 1; }

at10=${rss[9]}
last=${rss[-1]}
peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
python3 - "$work/fixed.json" "$at10" "$last" "$peak" "$capacity" "$secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
at10, last, peak, capacity, secs = (float(x) for x in sys.argv[2:])
lag, lat = r["schedule_lag_us"], r["latency_us"]
flat = abs(last - at10) <= 0.10 * at10
rows = [
    ("wrk -t2 capacity (3 s, same server)", "%.0f req/s" % capacity, ""),
    ("requests sent / intended", "%d / %d" % (r["requests"], r["config"]["rate_per_s"] * secs), ""),
    ("achieved rate", "%.1f req/s" % r["achieved_rate"], ""),
    ("errors", str(r["errors"]["total"]), "pass" if r["errors"]["total"] == 0 else "FAIL"),
    ("schedule lag p50 / p99 / max", "%d / %d / %d us" % (lag["p50"], lag["p99"], lag["max"]),
     "pass" if lag["p99"] < 1000 else "FAIL (p99 >= 1 ms)"),
    ("latency p50 / p99 / max", "%.2f / %.2f / %.2f ms" % (lat["p50"] / 1e3, lat["p99"] / 1e3, lat["max"] / 1e3), ""),
    ("pool exhausted", str(r["pool_exhausted"]), ""),
    ("RSS at 10 s / at end / peak", "%.1f / %.1f / %.1f MB" % (at10 / 1024, last / 1024, peak / 1024),
     ("pass" if flat else "FAIL (not flat)") + ("" if peak < 64 * 1024 else ", FAIL (>= 64 MB)")),
]
print("| loadprobe --rate %s --duration %ds | value | check |" % (r["config"]["rate"], secs))
print("| --- | ---: | --- |")
for name, value, check in rows:
    print("| %s | %s | %s |" % (name, value, check))
failed = [name for name, _, check in rows if "FAIL" in check]
if r.get("missing_results", 0) or r["verdict"] == "fault":
    failed.append("probe fault: %d requests without a recorded result" % r.get("missing_results", 0))
if failed:
    print("FAIL: " + "; ".join(failed), file=sys.stderr)
    sys.exit(1)
PY
