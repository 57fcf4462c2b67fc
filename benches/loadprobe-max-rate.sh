#!/usr/bin/env bash
# Max rate of `loadprobe --rate max` (32 keep-alive connections, recording everything) against
# the minimal hyper server `hello-hyper`, side by side with wrk -t1, wrk -t2 and oha (when
# installed) in the same run: the report's probe comparison (benches/src/bin/report).
#
#   benches/loadprobe-max-rate.sh [ROUNDS] [SECONDS]   (defaults: 5 10)
#
# Exits 1 when the probe is below 1.0x wrk -t1 or 0.9x the better wrk, or did not record every
# request.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10}
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk
build server loadprobe benches
"$bin/report" --only probe --rounds "$rounds" --seconds "$secs" --strict
