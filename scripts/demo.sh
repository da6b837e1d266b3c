#!/usr/bin/env bash
# The main job, in one command: a canary rollout of the pneumonia model end to end on loopback.
# Installs what it needs (scripts/setup.sh), builds augur, and runs `augur demo`: model
# servers (stable v1 ×2, canary v2), the proxy with a CanaryPolicy (5% -> 20% -> 50% -> 100%,
# analysis between the steps, 10% mirrored to the embedded shadow model, rollback triggers), the
# 16 real chest X-rays as traffic with delayed labels, and a live view ending with the outcome.
#
#   scripts/demo.sh                            # the good canary: ends Promoted
#   scripts/demo.sh --scenario bad-canary      # the bad canary: ends RolledBack, cause named
#   AUGUR_DEMO_SCREENSHOT=docs/dashboard.png scripts/demo.sh   # also screenshots the dashboard
#
# The real Xception model is used when scripts/fetch-model.sh has fetched it (opt-in: it has no
# licence, so it is never committed); otherwise the non-medical fixtures, as the screen says.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
echo "== building augur (release)"
cargo build --release --locked --bin augur
augur="$root/target/release/augur"
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so.1.32.0"

shot="${AUGUR_DEMO_SCREENSHOT:-}"
if [ -z "$shot" ]; then
  exec "$augur" demo "$@"
fi

# With a screenshot: the dashboard on a known admin port; once the rollout has ended (the page
# then shows the whole history), headless Chromium takes the picture while the demo lingers.
admin=127.0.0.1:15000
"$augur" demo --admin "$admin" --linger 20 "$@" &
demo=$!
(
  for _ in $(seq 600); do
    if curl -fs "http://$admin/rollouts" 2>/dev/null | grep -Eq '"phase": "(promoted|rolled_back|aborted)"'; then
      sleep 3
      chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1500 \
        --virtual-time-budget=4000 --screenshot="$root/$shot" "http://$admin/ui" >/dev/null 2>&1 \
        && echo "== dashboard screenshot: $shot" >&2
      exit 0
    fi
    sleep 1
  done
) &
wait "$demo"
