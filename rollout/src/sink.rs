//! Where decided weights go: the single proxy applies them to its own routes; the controller
//! publishes them to every sidecar. The engine writes through this trait and knows neither.

use augur_analyzer::rollout::Weights;
use augur_policies::HeaderRoute;

/// A rollout's managed routes besides its weights: the `setHeaderRoute` and `setMirrorRoute`
/// steps in force (Argo Rollouts' managed routes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedRoutes {
    /// Header routes: a request matching every header match of one goes to the canary,
    /// whatever the weights.
    pub headers: Vec<HeaderRoute>,
    /// Mirror routes: name → percent of the route's requests copied to the canary.
    pub mirrors: Vec<(String, u8)>,
}

impl ManagedRoutes {
    /// Whether no header or mirror route is in force.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.mirrors.is_empty()
    }
}

/// Receives every rollout's weights as the engine decides them.
pub trait WeightSink: Send + Sync {
    /// The weights a rollout last set for `policy` (`namespace/name`), if any.
    fn get(&self, policy: &str) -> Option<Weights>;
    /// `policy`'s rollout set these weights.
    fn set(&self, policy: &str, weights: Weights);
    /// `policy` is gone: its routes go back to the VirtualService's own weights (and lose
    /// any managed route).
    fn remove(&self, policy: &str);
    /// `policy`'s rollout has these managed routes now (empty: none). A sink that carries
    /// weights only ignores them.
    fn set_routes(&self, policy: &str, routes: &ManagedRoutes) {
        let _ = (policy, routes);
    }
}

/// Weights kept in a map, for the engine's tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MapSink(
    std::sync::Mutex<std::collections::BTreeMap<String, Weights>>,
    pub(crate) std::sync::Mutex<std::collections::BTreeMap<String, ManagedRoutes>>,
);

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
        if let Ok(mut map) = self.1.lock() {
            map.remove(policy);
        }
    }

    fn set_routes(&self, policy: &str, routes: &ManagedRoutes) {
        if let Ok(mut map) = self.1.lock() {
            if routes.is_empty() {
                map.remove(policy);
            } else {
                map.insert(policy.to_owned(), routes.clone());
            }
        }
    }
}
