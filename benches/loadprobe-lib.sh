# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Shared by the loadprobe benchmark scripts (sourced, not run): builds the probe and the
# hello-hyper baseline in release and starts hello-hyper on a free loopback port. Sets what
# benches/lib.sh sets, and url.
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk python3
build loadprobe benches

port=$(free_port)
"$bin/hello-hyper" "127.0.0.1:$port" >/dev/null & pids+=($!)
wait_up "$port"
url="http://127.0.0.1:$port/"
