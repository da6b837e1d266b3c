#!/usr/bin/env bash
# Fuzzes augur's untrusted-input paths with cargo-fuzz (libFuzzer): policy files, image and
# DICOM decoding, route matching and header handling. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   scripts/fuzz.sh                          # every target, 20 s each
#   scripts/fuzz.sh 3600                     # the long run: an hour per target
#   scripts/fuzz.sh 20 policy_load image_decode  # the CI run (scripts/test.sh)
#
# Works with the stable toolchain alone: cargo-fuzz is installed (pinned, --locked) into
# .cache/cargo-fuzz on first use, and RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags
# cargo-fuzz passes (sanitizer, coverage instrumentation). Environment:
#   FUZZ_SANITIZER  address (default; stable ships the ASan runtime) or none
#   FUZZ_JOBS       parallel libFuzzer workers per target (default 1)
#
# New inputs go to fuzz/target/corpus/<target> (git-ignored); the committed seeds in
# fuzz/corpus/<target> and the crash regressions in fuzz/regressions/<target> are read, never
# written. A crash leaves its input in fuzz/artifacts/<target>/ and makes the script exit 1
# after the other targets ran: fix the bug, copy the input to fuzz/regressions/<target>/ and
# add a #[test] that feeds it to the same function in the owning crate.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

CARGO_FUZZ_VERSION=0.13.1
seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(policy_load image_decode route_match headers path_normalize)
fi
sanitizer=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}

# The feature each target needs (heavy dependencies are optional in fuzz/Cargo.toml).
features_for() {
  case "$1" in
    policy_load) echo "" ;;
    image_decode) echo "image" ;;
    route_match | headers | path_normalize) echo "proxy" ;;
    *) echo "fuzz.sh: unknown target $1" >&2; exit 2 ;;
  esac
}

bin="$root/.cache/cargo-fuzz/bin"
if ! "$bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into .cache/cargo-fuzz"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$root/.cache/cargo-fuzz" --quiet
fi
export PATH="$bin:$PATH"
export RUSTC_BOOTSTRAP=1

failed=()
for target in "${targets[@]}"; do
  features=$(features_for "$target")
  feature_args=()
  [ -n "$features" ] && feature_args=(--features "$features")
  common=(--sanitizer "$sanitizer" --debug-assertions "${feature_args[@]}")

  echo "== fuzz build $target ($sanitizer${features:+, features $features})"
  start=$(date +%s)
  (cd fuzz && cargo fuzz build "${common[@]}" "$target")
  echo "   built in $(($(date +%s) - start)) s"

  work="fuzz/target/corpus/$target"
  mkdir -p "$work" "fuzz/corpus/$target" "fuzz/regressions/$target" "fuzz/artifacts/$target"
  log="fuzz/target/$target.log"
  echo "== fuzz run $target for $seconds s"
  # Paths are relative to fuzz/, where cargo fuzz runs.
  jobs_args=()
  [ "$jobs" -gt 1 ] && jobs_args=(--jobs "$jobs")
  if (cd fuzz && cargo fuzz run "${common[@]}" "${jobs_args[@]}" "$target" \
    "target/corpus/$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1) >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
    echo "   ok: ${execs:-?} executions, ${rate:-?}/s, $cov, corpus $(find "$work" -type f | wc -l) new inputs"
  else
    echo "   FAILED: see $log and fuzz/artifacts/$target/"
    tail -40 "$log"
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz: crashes in ${failed[*]}"
  exit 1
fi
echo "== fuzz: no crash in ${targets[*]}"
