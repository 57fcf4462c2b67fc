#!/usr/bin/env bash
# Runs the whole test suite under cargo-nextest (.config/nextest.toml: at most 2 fleets at once,
# across localaws's and orchestrate's tests) and lists the slowest tests, each with its own duration, from nextest's JUnit
# report. The table in docs/testing.md comes from here.
#
#   scripts/test-times.sh          the 15 slowest
#   scripts/test-times.sh 40       the 40 slowest
#
# Needs cargo-nextest (`cargo install cargo-nextest --locked`) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
top=${1:-15}
[[ $top =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: scripts/test-times.sh [N]: N must be a positive whole number, got '$top'" >&2
  exit 2
}
command -v cargo-nextest >/dev/null 2>&1 || {
  echo "cargo-nextest is not installed: cargo install cargo-nextest --locked" >&2
  exit 2
}
start=$SECONDS
status=0
cargo nextest run --workspace --locked --no-fail-fast || status=$?
echo "nextest: $((SECONDS - start)) s wall (exit $status)"
# nextest keeps its store under the workspace's target/ whatever CARGO_TARGET_DIR says.
python3 - "$PWD/target/nextest/default/junit.xml" "$top" <<'PY'
import sys
import xml.etree.ElementTree as ET

path, top = sys.argv[1], int(sys.argv[2])
rows = []
for suite in ET.parse(path).getroot().iter("testsuite"):
    for case in suite.iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        rows.append((float(case.get("time", "0")), suite.get("name"), case.get("name"), failed))
rows.sort(reverse=True)
print(f"{len(rows)} tests, {sum(r[0] for r in rows):.0f} s summed; the {min(top, len(rows))} slowest:")
print("| s | binary | test |")
print("| ---: | --- | --- |")
for secs, binary, name, failed in rows[:top]:
    print(f"| {secs:.1f} | {binary} | `{name}`{' FAILED' if failed else ''} |")
PY
exit "$status"
