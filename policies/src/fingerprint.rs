//! A rollout's fingerprint: the hash of a CanaryPolicy and of the VirtualService whose routes it
//! drives, as loaded (comments, ordering of documents and file names do not count).
//!
//! The controller and the sidecars that follow it load the same files in different processes,
//! often at different moments while a ConfigMap update propagates; a sidecar applies the
//! controller's routing for a policy only when both computed the same fingerprint.

use sha2::{Digest, Sha256};

use crate::{CanaryPolicy, PolicySet};

/// The fingerprint of `policy` within `set`: 16 hex digits of a SHA-256 over the policy and the
/// VirtualService it drives, in their validated form.
pub fn rollout_fingerprint(set: &PolicySet, policy: &CanaryPolicy) -> String {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(policy).unwrap_or_default());
    let vs = set.virtual_services.iter().find(|vs| {
        vs.metadata.namespace == policy.metadata.namespace
            && vs.metadata.name == policy.traffic_routing.virtual_service
    });
    if let Some(vs) = vs {
        hash.update(serde_json::to_vec(vs).unwrap_or_default());
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(yaml: &str) -> String {
        let loaded = crate::load_str("p.yaml", yaml).expect("valid");
        rollout_fingerprint(&loaded.set, &loaded.set.canary_policies[0])
    }

    const POLICY: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m}
spec:
  hosts: [m]
  http:
  - name: primary
    route:
    - {destination: {host: m, subset: v1}, weight: 100}
    - {destination: {host: m, subset: v2}, weight: 0}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: m}
spec:
  host: m
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: m}
spec:
  trafficRouting:
    virtualService: {name: m, routes: [primary]}
  stable: {host: m, subset: v1}
  canary: {host: m, subset: v2}
  steps:
  - setWeight: 20
  - setWeight: 100
";

    #[test]
    fn the_same_policy_has_the_same_fingerprint_and_a_change_another() {
        let base = fingerprint(POLICY);
        let commented = format!("# a comment changes nothing\n{POLICY}");
        assert_eq!(fingerprint(&commented), base);
        assert_ne!(
            fingerprint(&POLICY.replace("setWeight: 20", "setWeight: 30")),
            base
        );
        assert_ne!(
            fingerprint(
                &POLICY
                    .replace("weight: 100", "weight: 90")
                    .replace("weight: 0}", "weight: 10}")
            ),
            base
        );
        assert_eq!(base.len(), 16);
    }
}
