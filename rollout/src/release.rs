//! Which release a rollout belongs to: its (stable, canary) pair.
//!
//! A rollout judges one canary against one stable. When the pair changes — another subset, or
//! the same subset relabelled for the next version (stable = v2, canary = v3 after v2 was
//! promoted) — the saved state of the old pair means nothing for the new one: applying it would
//! send a promoted rollout's 100% to an untested canary. [`release_key`] names the pair as the
//! policy resolves it (host, subset and the subset's labels from its DestinationRule), so
//! [`crate::Rollouts`] starts a new rollout at step 1 when it changes, archives the old
//! one, and never applies state saved for another pair.

use std::collections::BTreeMap;

use augur_policies::{policy_key, CanaryPolicy, DestinationRef, PolicySet};

use crate::sink::WeightSink;

/// `stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}`.
pub fn release_key(set: &PolicySet, policy: &CanaryPolicy) -> String {
    let ns = &policy.metadata.namespace;
    let side = |d: &DestinationRef| {
        let labels: BTreeMap<String, String> = d
            .subset
            .as_deref()
            .and_then(|s| {
                set.destination_rule_for(&d.host, ns)
                    .and_then(|dr| dr.subset(s))
            })
            .map(|s| s.labels.clone().into_iter().collect())
            .unwrap_or_default();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match &d.subset {
            Some(s) => format!("{}/{s} {{{}}}", d.host, labels.join(",")),
            None => format!("{} {{}}", d.host),
        }
    };
    match &policy.canary {
        Some(canary) => format!("stable {} → canary {}", side(&policy.stable), side(canary)),
        None => format!("stable {} (shadow-only)", side(&policy.stable)),
    }
}

/// Before a reloaded policy set serves: every CanaryPolicy whose release changed sends all its
/// traffic to stable until its new rollout sets the first step's weight, so no request goes to
/// an untested canary at the old rollout's weight.
pub fn hold_changed_releases(old: &PolicySet, new: &PolicySet, weights: &dyn WeightSink) {
    for policy in &new.canary_policies {
        let key = policy_key(policy);
        let Some(before) = old
            .canary_policies
            .iter()
            .find(|p| policy_key(p) == key)
            .map(|p| release_key(old, p))
        else {
            continue;
        };
        if before != release_key(new, policy) && weights.get(&key).is_some() {
            tracing::info!(policy = %key, "release changed: all traffic to stable until the new rollout starts");
            weights.set(&key, augur_analyzer::rollout::Weights::canary(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(stable_version: &str, canary_version: &str) -> PolicySet {
        let yaml = include_str!("../../policies/examples/canary-pneumonia.yaml")
            .replacen(
                "        version: v1\n",
                &format!("        version: {stable_version}\n"),
                1,
            )
            .replacen(
                "        version: v2\n",
                &format!("        version: {canary_version}\n"),
                1,
            );
        augur_policies::load_str("p.yaml", &yaml)
            .expect("valid policy")
            .set
    }

    #[test]
    fn the_key_names_subsets_and_their_versions() {
        let set = example("v1", "v2");
        let key = release_key(&set, &set.canary_policies[0]);
        assert_eq!(
            key,
            "stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}"
        );
        let next = example("v2", "v3");
        assert_ne!(release_key(&next, &next.canary_policies[0]), key);
    }

    #[test]
    fn a_changed_release_holds_all_traffic_on_stable() {
        let (old, new) = (example("v1", "v2"), example("v2", "v3"));
        let weights = crate::sink::MapSink::default();
        weights.set(
            "default/pneumonia",
            augur_analyzer::rollout::Weights::canary(100),
        );
        hold_changed_releases(&old, &old, &weights);
        assert_eq!(
            weights.get("default/pneumonia").map(|w| w.canary),
            Some(100)
        );
        hold_changed_releases(&old, &new, &weights);
        assert_eq!(weights.get("default/pneumonia").map(|w| w.canary), Some(0));
    }
}
