#!/usr/bin/env bash
# Makes the token the sidecars present to augur controller (and the controller requires from
# beyond loopback): one random value, stored as Secret augur-controller-token (key `token`) in
# augur-system and in every namespace whose sidecars follow the controller. Secrets are
# namespaced, hence one copy per namespace; rerun with the same namespaces to rotate it
# (restart the controller and the sidecars afterwards: the token is read at start).
# Usage: k8s/certs/controller-token.sh [--dry-run] [NAMESPACE...]   (default: models)
#   --dry-run prints the Secrets instead of applying them (needs no cluster).
set -euo pipefail
dry_run=false
if [ "${1:-}" = "--dry-run" ]; then dry_run=true; shift; fi
namespaces=("augur-system" "${@:-models}")
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
kubectl=${KUBECTL:-kubectl}
for ns in "${namespaces[@]}"; do
  secret=$("$kubectl" -n "$ns" create secret generic augur-controller-token \
    --from-literal=token="$token" --dry-run=client -o yaml)
  if $dry_run; then
    printf -- '---\n%s\n' "$secret"
  else
    printf '%s\n' "$secret" | "$kubectl" apply -f -
  fi
done
