#!/usr/bin/env bash
# localaws's ALB stand-in against nginx as a keep-alive reverse proxy, in front of one `server`
# task, same machine, same run: the report's proxy comparison (benches/src/bin/report).
# Throughput with wrk through each and straight to the task; the latency each adds at
# 1,000 req/s, measured with loadprobe.
#
#   benches/localaws-proxy.sh [ROUNDS] [SECONDS]   (defaults: 3 10)
#
# Exits 1 when the listener is below 0.9x nginx, adds 150 us or more at the median, or a request
# failed.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-10}
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk nginx
build server loadprobe benches
"$bin/report" --only proxy --rounds "$rounds" --seconds "$secs" --strict
