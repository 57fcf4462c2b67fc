# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Shared by the loadprobe benchmark scripts (sourced, not run): builds the probe and the
# hello-hyper baseline in release and starts hello-hyper on a free loopback port. Sets what
# benches/lib.sh sets, url, and probe_args (what the probe needs to trust the server).
# TLS=1: hello-hyper serves HTTPS with a self-signed certificate made at start; url is
# https://..., probe_args is (--ca-file CERT); wrk does not verify certificates.
# shellcheck source=benches/lib.sh
source benches/lib.sh
need wrk python3
build loadprobe benches

port=$(free_port)
if [[ ${TLS:-0} == 1 ]]; then
  "$bin/hello-hyper" "127.0.0.1:$port" --tls "$work/cert.pem" >/dev/null & pids+=($!)
  wait_up "$port"
  url="https://127.0.0.1:$port/"
  probe_args=(--ca-file "$work/cert.pem")
else
  "$bin/hello-hyper" "127.0.0.1:$port" >/dev/null & pids+=($!)
  wait_up "$port"
  url="http://127.0.0.1:$port/"
  probe_args=()
fi
