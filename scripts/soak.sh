#!/usr/bin/env bash
# Soak: mixed traffic with mirroring and shadow scoring through a release augur for a long time,
# sampling the proxy's RSS and open file descriptors; fails when either grows after warm-up.
# Not part of CI (it takes SOAK_MINUTES, 30 by default); documented in docs/hardening.md.
#
#   scripts/soak.sh                    # 30 minutes
#   SOAK_MINUTES=5 scripts/soak.sh     # a short check of the script itself
#
# Traffic (fixed rate, oha with latency correction): GET /predict at SOAK_GET_RPS (200/s) and
# POST of a real chest X-ray (JPEG) at SOAK_POST_RPS (10/s), to VirtualService `model` split
# 80/20 between two nginx model stand-ins, 100% mirrored to a third nginx, and 10% of requests
# copied into the embedded shadow model (the non-medical fixture CNN) by a CanaryPolicy paused
# at 20%. Every 10 s: VmRSS, fd count, and the proxy's request and mirror-drop counters go to
# target/soak/samples.csv. Verdict: no failed request, and after a warm-up of SOAK_WARMUP
# seconds (900 by default: predictions wait up to the policy's 10-minute label TTL for their
# ground truth, so the label joins only reach their steady size after it) the median RSS of the
# last fifth within 10% of the first fifth, and the median fd count within +10%.
# `scripts/soak.sh --verdict` re-judges the samples of the last run without running again.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${SOAK_MINUTES:-30}
warmup=${SOAK_WARMUP:-900}
out=target/soak
get_rps=${SOAK_GET_RPS:-200}
post_rps=${SOAK_POST_RPS:-10}

mkdir -p "$out"
verdict() {
  python3 - "$out" "$warmup" <<'PY'
import csv, json, statistics, sys
out, warmup = sys.argv[1], int(sys.argv[2])
rows = [r for r in csv.DictReader(open(f"{out}/samples.csv"))]
warm = [r for r in rows if int(r["t_s"]) >= warmup] or rows
fifth = max(1, len(warm) // 5)
early, late = warm[:fifth], warm[-fifth:]
med = lambda rs, k: statistics.median(int(r[k]) for r in rs)
rss0, rss1 = med(early, "rss_kib"), med(late, "rss_kib")
fd0, fd1 = med(early, "fds"), med(late, "fds")
ok = True
for name in ("get", "post"):
    j = json.load(open(f"{out}/{name}.json"))
    codes = j.get("statusCodeDistribution", {})
    # oha cuts the requests in flight when its duration ends: not a failure of the proxy.
    errors = {k: v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k}
    bad = sum(v for k, v in codes.items() if not k.startswith("2"))
    print(f"soak {name}: {sum(codes.values())} requests, {bad} non-2xx, errors {errors or 'none'}, "
          f"{j['summary']['requestsPerSec']:.1f} req/s, p99 {j['latencyPercentiles']['p99']*1000:.2f} ms")
    ok &= bad == 0 and not errors
for a in range(0, int(rows[-1]["t_s"]) + 1, 360):
    window = [r for r in rows if a <= int(r["t_s"]) < a + 360]
    if window:
        print(f"soak {a // 60:>2}-{(a + 360) // 60:<2} min: RSS {med(window, 'rss_kib') / 1024:.1f} MiB, "
              f"fds {med(window, 'fds'):.0f} (medians)")
print(f"soak RSS: {rss0} KiB after {warmup} s of warm-up, {rss1} KiB at the end ({(rss1 - rss0) / rss0:+.1%})")
print(f"soak fds: {fd0} after warm-up, {fd1} at the end")
print(f"soak peak RSS: {max(int(r['rss_kib']) for r in rows)} KiB; samples in {out}/samples.csv")
ok &= rss1 <= rss0 * 1.10 and fd1 <= fd0 * 1.10
print("soak: PASS (flat after warm-up, no failed request)" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
}
if [ "${1:-}" = "--verdict" ]; then
  verdict
  exit
fi
scripts/setup.sh >/dev/null
oha=$(scripts/oha.sh)
echo "soak: building augur (release)"
cargo build --release --locked --bin augur
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so.1.32.0"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Three nginx model stand-ins (stable, canary, mirror sink) answering a JSON prediction.
ports=(19181 19182 19183)
for port in "${ports[@]}"; do
  mkdir -p "$work/nginx-$port"
  cat > "$work/nginx-$port/nginx.conf" <<NGINX
daemon off; worker_processes 1; pid $work/nginx-$port/pid; error_log $work/nginx-$port/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $work/nginx-$port; client_max_body_size 16m;
  server { listen 127.0.0.1:$port; keepalive_requests 1000000;
    location / { default_type application/json;
      return 200 '{"prediction":"NORMAL","confidence":0.12,"model_version":"$port"}'; } } }
NGINX
  nginx -c "$work/nginx-$port/nginx.conf" -p "$work/nginx-$port" & pids+=($!)
done

model="$root/inference/fixtures/models/nonmedical-tiny-a.onnx"
cat > "$work/policy.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: model}
spec:
  hosts: [model]
  http:
  - name: primary
    route:
    - destination: {host: model, subset: v1}
      weight: 100
    - destination: {host: model, subset: v2}
      weight: 0
    mirror: {host: model, subset: sink}
    mirrorPercentage: {value: 100}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: model}
spec:
  host: model
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: sink, labels: {version: sink}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: model}
spec:
  hosts: [model]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: ${ports[0]}}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: ${ports[1]}}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: ${ports[2]}}, labels: {version: sink}}
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: model}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {name: model, routes: [primary]}
  stable: {host: model, subset: v1}
  canary: {host: model, subset: v2}
  steps:
  - setWeight: 20
  - pause: {}
  analysis:
    interval: 30s
    metrics:
    - {name: error-rate, kind: errorRate, allowedChange: {absolute: 100}}
  prediction: {scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}
  shadow:
    model: $model
    mirrorPercentage: 10
    preprocessing: {channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}
YAML

listen=127.0.0.1:19180
admin=127.0.0.1:19190
prom=127.0.0.1:19191
target/release/augur proxy --policy "$work/policy.yaml" --listen "$listen" --admin "$admin" \
  --prometheus "$prom" --concurrency 1 --log-level warn & augur=$!
pids+=("$augur")
for _ in $(seq 100); do curl -fs "http://$admin/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://$admin/ready" >/dev/null || { echo "soak: augur did not start" >&2; exit 1; }

xray=$(ls inference/testdata/xrays/*.jpeg | head -1)
secs=$((minutes * 60))
echo "soak: $minutes min, GET $get_rps/s + X-ray POST $post_rps/s, 100% mirrored, 10% shadow-scored"
"$oha" -z "${secs}s" -q "$get_rps" -c 16 --latency-correction --no-tui --output-format json \
  -H 'Host: model' "http://$listen/predict" > "$out/get.json" & pids+=($!); get=$!
"$oha" -z "${secs}s" -q "$post_rps" -c 4 --latency-correction --no-tui --output-format json \
  -m POST -T image/jpeg -D "$xray" -H 'Host: model' "http://$listen/predict" \
  > "$out/post.json" & pids+=($!); post=$!

metric() { curl -fs "http://$prom/stats/prometheus" | awk -v m="$1" '$1 ~ "^"m"([{]|$)" {s += $2} END {print s + 0}'; }
echo "t_s,rss_kib,fds,requests,mirror_dropped" > "$out/samples.csv"
start=$(date +%s)
while kill -0 "$get" 2>/dev/null; do
  now=$(($(date +%s) - start))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$augur/status")
  fds=$(ls "/proc/$augur/fd" | wc -l)
  echo "$now,$rss,$fds,$(metric istio_requests_total),$(metric augur_mirror_dropped_total)" >> "$out/samples.csv"
  sleep 10
done
wait "$get" "$post" || true
kill -0 "$augur" || { echo "soak: augur died" >&2; exit 1; }

verdict
