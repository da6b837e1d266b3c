//! Where decided weights go: the single proxy applies them to its own routes; the controller
//! publishes them to every sidecar. The engine writes through this trait and knows neither.

use augur_analyzer::rollout::Weights;

/// Receives every rollout's weights as the engine decides them.
pub trait WeightSink: Send + Sync {
    /// The weights a rollout last set for `policy` (`namespace/name`), if any.
    fn get(&self, policy: &str) -> Option<Weights>;
    /// `policy`'s rollout set these weights.
    fn set(&self, policy: &str, weights: Weights);
    /// `policy` is gone: its routes go back to the VirtualService's own weights.
    fn remove(&self, policy: &str);
}

/// Weights kept in a map, for the engine's tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MapSink(std::sync::Mutex<std::collections::BTreeMap<String, Weights>>);

#[cfg(test)]
impl WeightSink for MapSink {
    fn get(&self, policy: &str) -> Option<Weights> {
        self.0.lock().ok()?.get(policy).copied()
    }

    fn set(&self, policy: &str, weights: Weights) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(policy.to_owned(), weights);
        }
    }

    fn remove(&self, policy: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(policy);
        }
    }
}
