#!/usr/bin/env bash
# Runs the test suite N times in a row while a CPU hog keeps every core busy, and reports how
# many runs failed; exits 1 if any did. A test that waits on a fixed sleep or a window of a few
# milliseconds fails here long before it fails in CI.
#
#   scripts/flake-hunt.sh N [CARGO TEST ARGS...]     (default args: --workspace)
#   scripts/flake-hunt.sh 20                         the whole suite, 20 times
#   scripts/flake-hunt.sh 3 -p server -p loadprobe   two crates, 3 times
#
# The tests are built first, without the hog; each run's output goes to a log file that is
# named when the run fails (with the failing tests and panics).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-}
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: scripts/flake-hunt.sh N [cargo test args...]: N must be a positive whole number, got '$runs'" >&2
  exit 2
}
shift
args=("$@")
(( ${#args[@]} > 0 )) || args=(--workspace)

logs=$(mktemp -d "${TMPDIR:-/tmp}/flake-hunt.XXXXXX")
hogs=()
cleanup() {
  for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "building the tests (no hog yet): cargo test ${args[*]}"
cargo test --locked "${args[@]}" --no-run --quiet

cores=$(nproc)
for _ in $(seq "$cores"); do
  (while :; do :; done) &
  hogs+=($!)
done
echo "CPU hog: $cores busy loops at normal priority, one per core"

failed=0
for i in $(seq "$runs"); do
  log="$logs/run-$i.log"
  start=$SECONDS
  if cargo test --locked --no-fail-fast "${args[@]}" >"$log" 2>&1; then
    echo "run $i/$runs: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "run $i/$runs: FAILED ($((SECONDS - start)) s), log: $log"
    grep -E '^test .* FAILED$|panicked at' "$log" | head -20 | sed 's/^/    /' || true
  fi
done
echo "$((runs - failed)) of $runs runs passed (cargo test ${args[*]}, CPU hog on $cores cores; logs in $logs)"
(( failed == 0 ))
