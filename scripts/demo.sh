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
# Models: the real Xception pneumonia model, fetched from PyPI and converted on first use by
# scripts/fetch-model.sh (it declares no licence, so it stays under .cache/ and is never
# committed); stable and shadow run it as is, the good canary is an equivalent re-export, the
# bad canary a degraded copy. When it cannot be had (no network, a checksum mismatch), the demo
# runs on the non-medical fixtures and says so on screen. `--models fixtures` skips the fetch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
case " $* " in
  *" --models fixtures "* | *" --models=fixtures "*) ;;
  *)
    echo "== the real pneumonia model (scripts/fetch-model.sh; cached after the first run)"
    scripts/fetch-model.sh \
      || echo "== could not fetch the real model: the demo falls back to the non-medical fixtures" >&2
    ;;
esac
echo "== building augur (release)"
cargo build --release --locked --bin augur
augur="$root/target/release/augur"
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so.1.32.0"

shot="${AUGUR_DEMO_SCREENSHOT:-}"
case "$shot" in "" | /*) ;; *) shot="$root/$shot" ;; esac
if [ -z "$shot" ]; then
  exec "$augur" demo "$@"
fi

# With a screenshot: the dashboard on a free loopback port (or AUGUR_DEMO_ADMIN); once the
# rollout has ended (the page then shows the whole history), headless Chromium takes the
# picture while the demo lingers.
admin=${AUGUR_DEMO_ADMIN:-127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
"$augur" demo --admin "$admin" --linger 20 "$@" &
demo=$!
(
  for _ in $(seq 600); do
    if curl -fs "http://$admin/rollouts" 2>/dev/null | grep -Eq '"phase": "(promoted|rolled_back|aborted)"'; then
      sleep 3
      rm -f "$shot"
      chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1500 \
        --virtual-time-budget=4000 --screenshot="$shot" "http://$admin/ui" >/dev/null 2>&1 || true
      if [ -s "$shot" ]; then
        echo "== dashboard screenshot: $shot" >&2
      else
        echo "== the dashboard screenshot failed (chromium wrote nothing to $shot)" >&2
      fi
      exit 0
    fi
    sleep 1
  done
) &
wait "$demo"
