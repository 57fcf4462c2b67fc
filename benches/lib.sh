# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Shared by the benchmark scripts (sourced, not run). Sets `bin` (release binaries) and `work`
# (scratch directory); every pid added to `pids` and the scratch directory are cleaned up
# on exit.
#   need TOOL...          exit 2 naming the Debian package when a tool is missing
#   build PACKAGE...      cargo build --release of those workspace packages
#   free_port             a free loopback port
#   wait_up PORT          wait until something listens on 127.0.0.1:PORT
#   median                median of numbers on stdin, one per line
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install $tool" >&2; exit 2; }
  done
}
build() {
  local args=()
  for p in "$@"; do args+=(-p "$p"); done
  cargo build --release --quiet "${args[@]}"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.02; done
  echo "port $1 never opened" >&2
  exit 1
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
