#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, format, lints, build, tests, policy check.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
scripts/setup.sh
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so.1.32.0"
# CI runs as root: the tests that need root (k8s/tests/netns.rs) fail under CI instead of
# skipping. CI systems set CI themselves; an empty CI (`CI= scripts/test.sh`) lets them skip.
export CI="${CI-true}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (the augur binary the end-to-end tests run)"
cargo build --workspace --locked --bins
echo "== cargo test"
cargo test --workspace --locked
echo "== augur policy check --files-only policies/ (the examples name keys and models that live where the proxy runs)"
target/debug/augur policy check --files-only policies/
echo "== cargo deny check licenses bans sources"
# cargo-deny is built once into .cache/cargo-deny (about 11 minutes on 2 cores, then cached).
# The advisories check needs RustSec's database, cloned from GitHub, which this CI cannot
# reach (package registries only): see docs/security.md.
deny_version=0.20.2
deny="$root/.cache/cargo-deny/bin/cargo-deny"
if ! "$deny" --version 2>/dev/null | grep -q " $deny_version\$"; then
    cargo install --locked --quiet cargo-deny --version "$deny_version" --root "$root/.cache/cargo-deny"
fi
"$deny" --locked check licenses bans sources
echo "== fuzz: policy_load and image_decode, 20 s each (docs/fuzzing.md)"
# fuzz/ is outside the workspace, so cargo fmt skips it. Every committed seed and regression
# input of every target replays under cargo test above (fuzz/common, docs/fuzzing.md). The proxy targets (pingora under ASan is too
# long to build here) run with scripts/fuzz.sh.
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs fuzz/common/*.rs
scripts/fuzz.sh 20 policy_load image_decode
echo "== done in $(( $(date +%s) - start )) s"
