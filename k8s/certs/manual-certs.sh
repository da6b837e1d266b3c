#!/usr/bin/env bash
# The manual alternative to cert-manager: makes a CA and the injector's serving certificate
# with openssl, stores them as Secret augur-system/augur-injector-tls, and writes the CA into
# the MutatingWebhookConfiguration's caBundle. Rerun before the certificate expires (1 year).
# Usage: k8s/certs/manual-certs.sh [--dry-run]   (needs openssl and kubectl with cluster access)
set -euo pipefail
ns=augur-system svc=augur-injector
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=augur-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$svc.$ns.svc" \
  -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\n' "$svc" "$ns" "$svc" "$ns" > "$dir/ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 365 -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
if [ "${1:-}" = "--dry-run" ]; then openssl x509 -in "$dir/tls.crt" -noout -subject -ext subjectAltName; exit 0; fi
kubectl -n "$ns" create secret tls "$svc-tls" --cert="$dir/tls.crt" --key="$dir/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl patch mutatingwebhookconfiguration augur-sidecar-injector --type=json \
  -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$(base64 -w0 < "$dir/ca.crt")\"}]"
