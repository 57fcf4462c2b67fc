#!/usr/bin/env bash
# Instance refresh on localaws: wall time of whole-group refreshes (3 and 10 instances at time
# scale 60), DescribeAutoScalingGroups latency, and RSS across consecutive refreshes.
#   benches/localaws-refresh.sh [ROUNDS]     (default 20)
# Exits non-zero when a refresh fails, misses its target (3 instances < 20 s, 10 < 60 s), or RSS
# is not flat.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
rounds=${1:-20}
build server benches
status=0
"$bin/refresh" 3 60 "$rounds" | tee "$work/three.txt" || status=1
"$bin/refresh" 10 60 3 | tee "$work/ten.txt" || status=1
check() { # FILE LIMIT_SECONDS LABEL
  local max
  max=$(awk '/^refresh of/ {for (i=1;i<=NF;i++) if ($i=="max") print $(i+1)}' "$1")
  if [ -z "$max" ] || awk -v m="$max" -v l="$2" 'BEGIN {exit !(m >= l)}'; then
    echo "FAIL: $3: max ${max:-?} s, target < $2 s"
    status=1
  else
    echo "ok: $3: max $max s < $2 s"
  fi
}
check "$work/three.txt" 20 "3 instances"
check "$work/ten.txt" 60 "10 instances"
exit $status
