# Shared by the loadprobe benchmark scripts (sourced, not run): builds the probe and the
# hello-hyper baseline in release, starts hello-hyper on a free loopback port, and cleans up every
# child and the scratch directory on exit. Sets: bin, work, url, pids.
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p loadprobe --bin loadprobe -p benches --bin hello-hyper
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.02; done; echo "port $1 never opened" >&2; exit 1; }

port=$(free_port)
"$bin/hello-hyper" "127.0.0.1:$port" >/dev/null & pids+=($!)
wait_up "$port"
url="http://127.0.0.1:$port/"
