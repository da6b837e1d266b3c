#!/usr/bin/env bash
# A first throughput comparison (the full benchmark harness is its own issue): one worker each,
# HTTP/1.1 keep-alive, an 80/20 split over two nginx backends answering a small JSON prediction;
# direct (no proxy), augur and Envoy 1.40 measured in one run, interleaved over ROUNDS rounds so
# machine drift cancels. Prints requests/s per round and the median ratios.
#   bench/first-throughput.sh [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=${1:-3}
secs=${2:-10}
scripts/setup.sh >/dev/null
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --bin augur >/dev/null 2>&1
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

for port in 19081 19082; do
  mkdir -p "$work/nginx-$port"
  cat > "$work/nginx-$port/nginx.conf" <<NGINX
daemon off; worker_processes 1; pid $work/nginx-$port/pid; error_log $work/nginx-$port/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work/nginx-$port;
  server { listen 127.0.0.1:$port; keepalive_requests 1000000;
    location / { default_type application/json;
      return 200 '{"prediction":"NORMAL","confidence":0.12,"model_version":"$port"}'; } } }
NGINX
  nginx -c "$work/nginx-$port/nginx.conf" -p "$work/nginx-$port" & pids+=($!)
done

cat > "$work/policy.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: model}
spec:
  hosts: [model]
  http:
  - route:
    - {destination: {host: model, subset: v1}, weight: 80}
    - {destination: {host: model, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: model}
spec:
  host: model
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: model}
spec:
  hosts: [model]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19082}, labels: {version: v2}}
YAML
target/release/augur proxy --policy "$work/policy.yaml" --listen 127.0.0.1:19001 \
  --admin 127.0.0.1:19000 --status 127.0.0.1:19021 --prometheus 127.0.0.1:19090 \
  --concurrency 1 --state-dir "$work/state" --log-level error & pids+=($!)

cat > "$work/envoy.yaml" <<'YAML'
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 19100}}}
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: 19002}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: b
          route_config:
            virtual_hosts:
            - name: model
              domains: ["model"]
              routes:
              - match: {prefix: /}
                route:
                  weighted_clusters:
                    clusters: [{name: v1, weight: 80}, {name: v2, weight: 20}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: v1
    type: STATIC
    load_assignment: {cluster_name: v1, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 19081}}}}]}]}
  - name: v2
    type: STATIC
    load_assignment: {cluster_name: v2, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 19082}}}}]}]}
YAML
.cache/envoy/bin/envoy -c "$work/envoy.yaml" --concurrency 1 --log-level error --base-id 7 & pids+=($!)
sleep 3

run() { wrk -t1 -c32 -d"${secs}s" -H 'Host: model' "http://127.0.0.1:$1/predict" | awk '/Requests\/sec/ {print $2}'; }
declare -A results
for r in $(seq "$rounds"); do
  for target in direct:19081 augur:19001 envoy:19002; do
    name=${target%%:*}; port=${target##*:}
    rps=$(run "$port"); results[$name]+="$rps "
    echo "round $r $name ${rps} req/s"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(echo "${results[direct]}" | median); a=$(echo "${results[augur]}" | median); e=$(echo "${results[envoy]}" | median)
echo "median req/s: direct $d, augur $a, envoy $e"
python3 -c "print(f'augur/envoy = {$a/$e:.2f}, augur/direct = {$a/$d:.2f}, envoy/direct = {$e/$d:.2f}')"
