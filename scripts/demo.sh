#!/usr/bin/env bash
# The main job on its embedded default: augur in front of two local model endpoints (nginx
# answering as pneumonia model v1 and v2), driven by the example canary policy. It shows the
# rollout's first step (5%), manual promotion through the analysis gates to 20%, an invalid
# policy edit that is rejected while traffic keeps flowing, and an abort back to stable.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
echo "== building augur (release)"
cargo build --release --locked --bin augur
augur="$root/target/release/augur"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Two model endpoints on the addresses the example ServiceEntry names (v1 :8501, v2 :8502).
for v in v1 v2; do
  port=$([ "$v" = v1 ] && echo 8501 || echo 8502)
  mkdir -p "$work/nginx-$v"
  cat > "$work/nginx-$v/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx-$v/nginx.pid;
error_log $work/nginx-$v/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx-$v;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type application/json;
      return 200 '{"prediction":"NORMAL","confidence":0.12,"model_version":"$v"}';
    }
  }
}
NGINX
  nginx -c "$work/nginx-$v/nginx.conf" -p "$work/nginx-$v" &
  pids+=($!)
done

policy="$work/canary-pneumonia.yaml"
cp policies/examples/canary-pneumonia.yaml "$policy"
echo "== the policy, as augur resolves it"
"$augur" policy explain "$policy"

listen=127.0.0.1:18080
"$augur" proxy --policy "$policy" --listen "$listen" --admin 127.0.0.1:15000 \
  --status 127.0.0.1:15021 --prometheus 127.0.0.1:15090 --state-dir "$work/state" \
  --log-level warn &
pids+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:15000/ready >/dev/null && break; sleep 0.1; done

traffic() {
  python3 - "$listen" "$1" <<'PY'
import http.client, json, sys, collections
addr, n = sys.argv[1], int(sys.argv[2])
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port))
seen = collections.Counter()
for _ in range(n):
    conn.request("POST", "/predict", body=b"{}", headers={"Host": "pneumonia", "Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    seen[json.loads(body)["model_version"] if r.status == 200 else f"HTTP {r.status}"] += 1
print("   " + ", ".join(f"{k}: {v} ({100*v/n:.1f}%)" for k, v in sorted(seen.items())))
PY
}

rollout() { "$augur" rollout --admin 127.0.0.1:15000 "$@"; }
sleep 1
echo "== the CanaryPolicy starts its rollout: step 1 sends 5% to the canary"
rollout status pneumonia
traffic 1000
echo "== an SRE promotes past the analysis gate to 20% (analysis runs every minute in this policy)"
rollout promote pneumonia
traffic 1000
echo "== a broken edit (total weight 0) is rejected; the last good policy keeps serving"
sed -i '0,/weight: 100$/s//weight: 0/' "$policy"
sleep 1
traffic 1000
echo "== abort: all traffic back to stable, recorded in the audit log"
rollout abort pneumonia
traffic 1000
echo "== the decisions, as audited in $work/state"
cut -c1-160 "$work/state/default_pneumonia.decisions.jsonl"
curl -s http://127.0.0.1:15090/stats/prometheus | grep -E '^augur_config_(reload|last)|^augur_rollout_weight|^rollbacks_total'
echo "== done: see README.md for the policy files, the admin endpoints and the tests"
