//! Weighted choice between a route's destinations: share = weight / sum, weight 0 gets nothing.

use std::sync::Arc;

use augur_analyzer::rollout::Weights;
use augur_model::Arm;

use super::cluster::Cluster;

/// One destination of a split.
#[derive(Debug, Clone)]
pub struct WeightedCluster {
    /// Where the traffic goes.
    pub cluster: Arc<Cluster>,
    /// Relative weight.
    pub weight: u32,
    /// Whether this destination is the stable or the canary version.
    pub arm: Arm,
    /// The destination's own header edits (Istio applies them after the route's).
    pub headers: augur_policies::Headers,
}

/// The destinations of a route with their relative weights.
#[derive(Debug, Clone)]
pub struct Split {
    destinations: Vec<WeightedCluster>,
    total: u64,
}

impl Split {
    /// A split over the destinations; zero-weight entries are kept for reporting but never chosen.
    pub fn new(destinations: Vec<WeightedCluster>) -> Self {
        let total = destinations.iter().map(|d| u64::from(d.weight)).sum();
        Self {
            destinations,
            total,
        }
    }

    /// The destinations in policy order.
    pub fn destinations(&self) -> &[WeightedCluster] {
        &self.destinations
    }

    /// Picks the destination for a uniformly random `roll` (any `u64`): destination `i` is chosen
    /// with probability `weight_i / total`. `None` when every weight is zero.
    pub fn pick(&self, roll: u64) -> Option<(usize, &WeightedCluster)> {
        self.pick_by(roll, self.total, |d| d.weight)
    }

    /// Like [`Split::pick`], but with the weights a rollout set: each destination weighs what
    /// its arm (stable or canary) is given.
    pub fn pick_with(&self, roll: u64, rollout: Weights) -> Option<(usize, &WeightedCluster)> {
        let weight = |d: &WeightedCluster| match d.arm {
            Arm::Canary => u32::from(rollout.canary),
            _ => u32::from(rollout.stable),
        };
        let total = self.destinations.iter().map(|d| u64::from(weight(d))).sum();
        self.pick_by(roll, total, weight)
    }

    /// The canary destination (the first, if several), whatever the weights: where a rollout's
    /// header route sends the requests it matches.
    pub fn canary(&self) -> Option<(usize, &WeightedCluster)> {
        self.destinations
            .iter()
            .enumerate()
            .find(|(_, d)| d.arm == Arm::Canary)
    }

    fn pick_by(
        &self,
        roll: u64,
        total: u64,
        weight: impl Fn(&WeightedCluster) -> u32,
    ) -> Option<(usize, &WeightedCluster)> {
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for (i, d) in self.destinations.iter().enumerate() {
            let w = u64::from(weight(d));
            if point < w {
                return Some((i, d));
            }
            point -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> Arc<Cluster> {
        Arc::new(Cluster::new(name.into(), "h".into(), None, vec![]))
    }

    #[test]
    fn shares_follow_weights_exactly_over_one_cycle() {
        let split = Split::new(vec![
            WeightedCluster {
                cluster: cluster("v1"),
                weight: 80,
                arm: Arm::Stable,
                headers: Default::default(),
            },
            WeightedCluster {
                cluster: cluster("v2"),
                weight: 20,
                arm: Arm::Stable,
                headers: Default::default(),
            },
            WeightedCluster {
                cluster: cluster("v3"),
                weight: 0,
                arm: Arm::Stable,
                headers: Default::default(),
            },
        ]);
        let mut counts = [0usize; 3];
        for roll in 0..100u64 {
            let c = &split.pick(roll).unwrap().1.cluster;
            let i = ["v1", "v2", "v3"]
                .iter()
                .position(|n| *n == c.name)
                .unwrap();
            counts[i] += 1;
        }
        assert_eq!(counts, [80, 20, 0]);
    }

    #[test]
    fn rollout_weights_override_the_policy_by_arm() {
        let split = Split::new(vec![
            WeightedCluster {
                cluster: cluster("v1"),
                weight: 100,
                arm: Arm::Stable,
                headers: Default::default(),
            },
            WeightedCluster {
                cluster: cluster("v2"),
                weight: 0,
                arm: Arm::Canary,
                headers: Default::default(),
            },
        ]);
        let canary = (0..100u64)
            .filter(|r| split.pick_with(*r, Weights::canary(20)).unwrap().1.arm == Arm::Canary)
            .count();
        assert_eq!(canary, 20);
    }

    #[test]
    fn all_zero_weights_pick_nothing() {
        let split = Split::new(vec![WeightedCluster {
            cluster: cluster("v1"),
            weight: 0,
            arm: Arm::Stable,
            headers: Default::default(),
        }]);
        assert!(split.pick(7).is_none());
    }
}
