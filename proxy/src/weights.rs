//! The weights rollouts set, read by every request without a lock.
//!
//! A rollout changes a route's stable/canary weights at runtime; requests look the driving
//! policy up in an `arc-swap` snapshot of this map and apply it to the route's split. A request
//! already in flight keeps the destination it picked.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use augur_analyzer::rollout::Weights;

/// Current weights by CanaryPolicy key (`namespace/name`).
#[derive(Default)]
pub struct RolloutWeights {
    current: ArcSwap<HashMap<Arc<str>, Weights>>,
}

impl RolloutWeights {
    /// The weights a rollout set for `policy`, if it set any.
    pub fn get(&self, policy: &str) -> Option<Weights> {
        self.current.load().get(policy).copied()
    }

    /// Sets `policy`'s weights (copy-on-write; only rollouts write, rarely).
    pub fn set(&self, policy: &str, weights: Weights) {
        self.current.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.insert(Arc::from(policy), weights);
            next
        });
    }

    /// Forgets `policy` (its route goes back to the VirtualService's own weights).
    pub fn remove(&self, policy: &str) {
        self.current.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.remove(policy);
            next
        });
    }
}

/// The single proxy's own rollouts write straight into the weights its requests read.
impl augur_rollout::WeightSink for RolloutWeights {
    fn get(&self, policy: &str) -> Option<Weights> {
        RolloutWeights::get(self, policy)
    }

    fn set(&self, policy: &str, weights: Weights) {
        RolloutWeights::set(self, policy, weights);
    }

    fn remove(&self, policy: &str) {
        RolloutWeights::remove(self, policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove() {
        let w = RolloutWeights::default();
        assert_eq!(w.get("default/p"), None);
        w.set("default/p", Weights::canary(20));
        assert_eq!(
            w.get("default/p"),
            Some(Weights {
                stable: 80,
                canary: 20
            })
        );
        w.remove("default/p");
        assert_eq!(w.get("default/p"), None);
    }
}
