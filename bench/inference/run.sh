#!/usr/bin/env bash
# Inference throughput of augur's shadow model (Rust, `ort` through augur-inference) against
# Python onnxruntime 1.32.0 on the same model, interleaved; and decode + preprocess cost per
# image on the 16 X-rays. See bench/inference/bench.py for what each side runs.
#
#   bench/inference/run.sh                 # 5 repetitions, 3 s per measurement
#   REPS=3 SECONDS_PER_RUN=2 bench/inference/run.sh
#
# Model: .cache/models/pneumonia_xception.onnx (the real Xception, from scripts/fetch-model.sh)
# when present, else the non-medical fixture inference/fixtures/models/nonmedical-tiny-a.onnx.
# MODEL=path.onnx overrides. Python onnxruntime, numpy and Pillow come from PyPI into
# .cache/bench-venv; the library augur loads is the same wheel's (scripts/setup.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

REPS=${REPS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
venv=.cache/bench-venv
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$root/.cache/onnxruntime/libonnxruntime.so.1.32.0}
[ -e "$ORT_DYLIB_PATH" ] || { echo "bench: $ORT_DYLIB_PATH missing: run scripts/setup.sh" >&2; exit 1; }

if [ -z "${MODEL:-}" ]; then
  MODEL=.cache/models/pneumonia_xception.onnx
  if [ ! -e "$MODEL" ]; then
    MODEL=inference/fixtures/models/nonmedical-tiny-a.onnx
    echo "bench: the real model is absent (scripts/fetch-model.sh); using the fixture $MODEL" >&2
  fi
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, numpy, PIL' 2>/dev/null; then
  echo "bench: creating $venv (onnxruntime==1.32.0, numpy, Pillow from PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q onnxruntime==1.32.0 numpy==2.4.6 Pillow==13.0.0
fi

echo "bench: building the Rust side (release)" >&2
cargo build --release --quiet -p augur-inference --example bench_inference

"$venv/bin/python" bench/inference/bench.py run \
  --augur target/release/examples/bench_inference --model "$MODEL" \
  --reps "$REPS" --seconds "$SECONDS_PER_RUN" --json target/bench-inference.json \
  inference/testdata/xrays/*.jpeg
