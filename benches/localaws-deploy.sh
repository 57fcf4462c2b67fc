#!/usr/bin/env bash
# CodeDeploy blue/green on localaws: wall time of canary deployments of 3 tasks at time scale 60
# (canary 10 % for 5 simulated minutes, a 15-minute termination wait), the production listener's
# p50 during the deployments against the steady fleet, and RSS across consecutive deployments.
#   benches/localaws-deploy.sh [ROUNDS] [RATE]     (defaults 20, 1000)
# Exits non-zero when a deployment fails, the probe sees an error, a deployment takes 30 s or
# more, or RSS is not flat.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
rounds=${1:-20}
rate=${2:-1000}
build server benches
"$bin/deploy" 60 "$rounds" "$rate"
