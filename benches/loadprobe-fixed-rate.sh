#!/usr/bin/env bash
# Fixed-rate precision and memory of loadprobe: 5,000 requests/s against `hello-hyper`, the
# report's fixed-rate comparison (benches/src/bin/report): the probe's own schedule lag (p99
# under 1 ms), and its RSS sampled every second (flat: the end within 10 % of 10 s; under 64 MiB).
#
#   benches/loadprobe-fixed-rate.sh [SECONDS]   (default: 60, at least 15)
#
# Exits 1 when a check fails (errors, a request without a result, schedule lag, memory).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
# shellcheck source=benches/lib.sh
source benches/lib.sh
build server loadprobe benches
"$bin/report" --only fixed-rate --fixed-seconds "$secs" --strict
