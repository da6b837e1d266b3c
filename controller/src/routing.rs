//! From the rollouts' decisions to the state the sidecars follow: the engine writes weights
//! into a [`PublishSink`], which wakes the publishing loop; the loop reads every rollout's
//! routing and publishes it when it changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use augur_analyzer::rollout::Weights;
use augur_model::fleet::{MirrorRouting, RolloutRouting};
use augur_policies::{policy_key, DestinationRef, PolicySet};
use augur_rollout::{RolloutSummary, Rollouts, WeightSink};
use tokio::sync::{watch, Notify};

use crate::policies::PolicyFiles;
use crate::publish::Publisher;

/// The engine's weights, kept for [`WeightSink::get`], with a wake-up for the publisher.
#[derive(Default)]
pub struct PublishSink {
    weights: Mutex<BTreeMap<String, Weights>>,
    changed: Notify,
}

impl WeightSink for PublishSink {
    fn get(&self, policy: &str) -> Option<Weights> {
        self.weights.lock().ok()?.get(policy).copied()
    }

    fn set(&self, policy: &str, weights: Weights) {
        if let Ok(mut map) = self.weights.lock() {
            map.insert(policy.to_owned(), weights);
        }
        self.changed.notify_one();
    }

    fn remove(&self, policy: &str) {
        if let Ok(mut map) = self.weights.lock() {
            map.remove(policy);
        }
        self.changed.notify_one();
    }

    /// The routes themselves are read from the rollouts' summaries when publishing
    /// ([`routing`]); a change only wakes the publisher.
    fn set_routes(&self, _policy: &str, _routes: &augur_rollout::sink::ManagedRoutes) {
        self.changed.notify_one();
    }
}

/// `host` or `host/subset`.
fn destination(d: &DestinationRef) -> String {
    match &d.subset {
        Some(s) => format!("{}/{s}", d.host),
        None => d.host.clone(),
    }
}

/// Every rollout's routing for the sidecars: its weights, phase, step and managed routes
/// (header route names, mirror routes), with the fingerprint of the policy version it
/// belongs to.
pub fn routing(set: &PolicySet, summaries: &[RolloutSummary]) -> Vec<RolloutRouting> {
    summaries
        .iter()
        .filter_map(|s| {
            let policy = set
                .canary_policies
                .iter()
                .find(|p| policy_key(p) == s.policy)?;
            // A shadow-only policy has no canary and no weights to publish.
            let canary = policy.canary.as_ref()?;
            Some(RolloutRouting {
                policy: s.policy.clone(),
                policy_hash: augur_policies::fingerprint::rollout_fingerprint(set, policy),
                stable: destination(&policy.stable),
                canary: destination(canary),
                stable_weight: s.weights.stable,
                canary_weight: s.weights.canary,
                phase: s.phase.clone(),
                step: s.step.map(|i| i + 1),
                changed_at_ms: (s.changed_at * 1000.0) as u64,
                header_routes: s.header_routes.clone(),
                mirror_routes: s
                    .mirror_routes
                    .iter()
                    .map(|(name, percent)| MirrorRouting {
                        name: name.clone(),
                        percent: *percent,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Publishes the rollouts' routing now, and again whenever a rollout decides something or the
/// policy files change, until `shutdown` turns true.
pub async fn publish_loop(
    sink: Arc<PublishSink>,
    rollouts: Arc<Rollouts>,
    policies: Arc<PolicyFiles>,
    publisher: Arc<Publisher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reloaded = policies.changes();
    loop {
        let serving = policies.serving();
        if publisher.publish(routing(&serving.set, &rollouts.summaries())) {
            let state = publisher.current();
            tracing::info!(
                version = state.version,
                rollouts = state.rollouts.len(),
                "published"
            );
        }
        tokio::select! {
            () = sink.changed.notified() => {}
            _ = reloaded.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}
