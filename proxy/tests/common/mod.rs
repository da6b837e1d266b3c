//! What the proxy's integration tests share.

/// A VirtualService `m` whose route `primary` a CanaryPolicy `m` drives from v1 to v2, with
/// `steps` (YAML lines, indented two spaces) as the policy's steps.
pub(crate) fn policy_with_steps(steps: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: m}}
spec:
  hosts: [m]
  http:
  - name: primary
    route:
    - {{destination: {{host: m, subset: v1}}, weight: 100}}
    - {{destination: {{host: m, subset: v2}}, weight: 0}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: m}}
spec:
  host: m
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {{name: m}}
spec:
  trafficRouting:
    virtualService: {{name: m, routes: [primary]}}
  stable: {{host: m, subset: v1}}
  canary: {{host: m, subset: v2}}
  steps:
{steps}"
    )
}
