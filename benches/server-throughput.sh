#!/usr/bin/env bash
# Throughput of `server` against a minimal hyper hello-world and a Python http.server service,
# same machine, same run: the report's server comparison (benches/src/bin/report); then
# exec-to-ready time and idle RSS.
#
#   benches/server-throughput.sh [ROUNDS] [SECONDS]   (defaults: 3 10)
#
# Exits 1 when server is below 0.9x hello-hyper or a request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-10}
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk python3
build server loadprobe benches
"$bin/report" --only server --rounds "$rounds" --seconds "$secs" --strict
echo
"$bin/startup" "$bin/server" 20 | tail -2
