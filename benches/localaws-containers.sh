#!/usr/bin/env bash
# localaws's Docker runtime beside its process runtime: a task's start to its application
# answering /ready (20 starts each), and a refresh of 3 instances at time scale 60 with every task
# a container of the project's image (ROUNDS refreshes each; RSS across them, containers left).
#   benches/localaws-containers.sh [ROUNDS]     (default 20)
# Needs a Docker engine. Exits non-zero when a run fails, a container is left, RSS is not flat,
# or the container refresh's median is above 1.5x the process refresh's.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
need docker
rounds=${1:-20}
build server benches
image=$(scripts/build-image.sh ecs-zdt/server:bench | tail -n 1)
status=0
"$bin/task-start" 20 | tee "$work/start-process.txt" || status=1
"$bin/task-start" 20 "$image" | tee "$work/start-container.txt" || status=1
"$bin/refresh" 3 60 "$rounds" | tee "$work/refresh-process.txt" || status=1
"$bin/refresh" 3 60 "$rounds" "$image" | tee "$work/refresh-container.txt" || status=1
median_of() { # FILE: the median a `refresh of` summary line reports
  awk '/^refresh of/ {for (i=1;i<=NF;i++) if ($i=="median") print $(i+1)}' "$1"
}
process=$(median_of "$work/refresh-process.txt")
container=$(median_of "$work/refresh-container.txt")
if [ -z "$process" ] || [ -z "$container" ]; then
  echo "FAIL: a refresh run reported no median"
  exit 1
fi
ratio=$(awk -v c="$container" -v p="$process" 'BEGIN {printf "%.2f", c / p}')
if awk -v r="$ratio" 'BEGIN {exit !(r > 1.5)}'; then
  echo "FAIL: container refresh median $container s is ${ratio}x the process refresh's $process s (target <= 1.5x)"
  status=1
else
  echo "ok: container refresh median $container s is ${ratio}x the process refresh's $process s (target <= 1.5x)"
fi
exit $status
