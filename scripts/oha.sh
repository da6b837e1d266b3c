#!/usr/bin/env bash
# Prints the path of oha, the fixed-rate load generator that corrects for coordinated omission,
# building it from crates.io into .cache/oha-native-tls the first time (about 4 minutes on 2
# cores). Used by bench/run.sh and scripts/soak.sh.
#
# oha's default TLS (rustls) builds aws-lc-sys, a large C library: that build took 9 of the 34
# minutes of a fresh-clone `make bench`. native-tls links Debian's OpenSSL (libssl-dev) instead
# and builds in about half the time; the client's TLS stack is the same for every target
# measured, so the benchmark's ratios do not depend on it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
version=1.16.0
dir=.cache/oha-native-tls
if [ ! -x "$dir/bin/oha" ]; then
  if ! dpkg -s libssl-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null; then
    echo "oha: installing libssl-dev pkg-config (Debian)" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
  fi
  echo "oha: building oha $version (native-tls) from crates.io into $dir (once, ~4 min on 2 cores)" >&2
  cargo install oha --version "$version" --locked --no-default-features --features native-tls \
    --root "$dir" >&2
fi
echo "$root/$dir/bin/oha"
