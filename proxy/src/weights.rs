//! The weights rollouts set, read by every request without a lock.
//!
//! A rollout changes a route's stable/canary weights at runtime; requests look the driving
//! policy up in an `arc-swap` snapshot of this map and apply it to the route's split. A request
//! already in flight keeps the destination it picked.
//!
//! A rollout's managed routes (`setHeaderRoute`, `setMirrorRoute`) travel the same way, in a
//! second map that stays empty, and costs a request one load and one emptiness check, while
//! no rollout has one.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use augur_analyzer::rollout::Weights;
use augur_rollout::sink::ManagedRoutes;

use crate::route::matcher::Matcher;

/// Current weights by CanaryPolicy key (`namespace/name`).
#[derive(Default)]
pub struct RolloutWeights {
    current: ArcSwap<HashMap<Arc<str>, Weights>>,
    routes: ArcSwap<HashMap<Arc<str>, Arc<ActiveRoutes>>>,
}

/// One rollout's managed routes in force, compiled for the request path.
#[derive(Debug)]
pub struct ActiveRoutes {
    /// Header routes: name and its header conditions (lowercase name, value matcher), all of
    /// which must hold.
    headers: Vec<(String, Vec<(String, Matcher)>)>,
    /// Mirror routes: name and percent of requests copied to the canary.
    mirrors: Vec<(String, f64)>,
}

impl ActiveRoutes {
    /// Compiles `routes`; a header route whose expression does not compile (the loader checks
    /// them, so never in practice) is left out and logged.
    pub fn compile(policy: &str, routes: &ManagedRoutes) -> Self {
        let headers = routes
            .headers
            .iter()
            .filter_map(|h| {
                let matches: Result<Vec<_>, _> = h
                    .matches
                    .iter()
                    .map(|(name, m)| Matcher::compile(m, false).map(|m| (name.clone(), m)))
                    .collect();
                matches
                    .map(|m| (h.name.clone(), m))
                    .map_err(|e| {
                        tracing::error!(policy, route = %h.name, error = %e, "header route not applied: its match does not compile");
                    })
                    .ok()
            })
            .collect();
        let mirrors = routes
            .mirrors
            .iter()
            .map(|(name, percent)| (name.clone(), f64::from((*percent).min(100))))
            .collect();
        Self { headers, mirrors }
    }

    /// The header route a request matches (every one of its conditions), if any.
    pub fn header_route<'a>(&self, header: &dyn Fn(&str) -> Option<&'a str>) -> Option<&str> {
        self.headers
            .iter()
            .find(|(_, matches)| {
                !matches.is_empty() && matches.iter().all(|(h, m)| m.matches(header(h), false))
            })
            .map(|(name, _)| name.as_str())
    }

    /// Whether a request is copied to the canary: each mirror route rolls its share, and one
    /// copy is made at most.
    pub fn mirror_roll(&self) -> bool {
        self.mirrors
            .iter()
            .any(|(_, percent)| crate::route::percent_roll(*percent))
    }

    /// The header routes' names.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(name, _)| name.as_str())
    }

    /// The mirror routes: name and percent.
    pub fn mirrors(&self) -> &[(String, f64)] {
        &self.mirrors
    }
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

    /// Forgets `policy` (its route goes back to the VirtualService's own weights, without
    /// managed routes).
    pub fn remove(&self, policy: &str) {
        self.current.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.remove(policy);
            next
        });
        self.set_routes(policy, &ManagedRoutes::default());
    }

    /// The managed routes in force for `policy`, if it has any. Without any rollout's, one
    /// load and an emptiness check: nothing is allocated.
    pub fn routes(&self, policy: &str) -> Option<Arc<ActiveRoutes>> {
        let map = self.routes.load();
        if map.is_empty() {
            return None;
        }
        map.get(policy).cloned()
    }

    /// Sets `policy`'s managed routes (empty: removes them). Copy-on-write, as the weights.
    pub fn set_routes(&self, policy: &str, routes: &ManagedRoutes) {
        let active = (!routes.is_empty()).then(|| Arc::new(ActiveRoutes::compile(policy, routes)));
        if active.is_none() && !self.routes.load().contains_key(policy) {
            return;
        }
        self.routes.rcu(|map| {
            let mut next = HashMap::clone(map);
            match &active {
                Some(a) => next.insert(Arc::from(policy), Arc::clone(a)),
                None => next.remove(policy),
            };
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

    fn set_routes(&self, policy: &str, routes: &ManagedRoutes) {
        RolloutWeights::set_routes(self, policy, routes);
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

    /// The managed routes carried for the request path: a header route matches only when
    /// every condition holds, a 100% mirror always rolls and a 0% one never, and removing the
    /// routes (or the policy) leaves the map empty, so requests pay nothing for them.
    #[test]
    fn managed_routes_are_carried_compiled_and_removed() {
        use augur_policies::{HeaderRoute, StringMatch};
        let w = RolloutWeights::default();
        assert!(w.routes("default/p").is_none());
        let routes = ManagedRoutes {
            headers: vec![HeaderRoute {
                name: "beta".into(),
                matches: vec![
                    ("x-beta".into(), StringMatch::Exact("true".into())),
                    ("x-user".into(), StringMatch::Prefix("tester-".into())),
                ],
            }],
            mirrors: vec![("copy".into(), 100)],
        };
        w.set_routes("default/p", &routes);
        let active = w.routes("default/p").expect("in force");
        assert!(w.routes("default/other").is_none());
        let both = |h: &str| match h {
            "x-beta" => Some("true"),
            "x-user" => Some("tester-7"),
            _ => None,
        };
        let one = |h: &str| (h == "x-beta").then_some("true");
        let wrong = |h: &str| match h {
            "x-beta" => Some("True"),
            "x-user" => Some("tester-7"),
            _ => None,
        };
        assert_eq!(active.header_route(&both), Some("beta"));
        assert_eq!(active.header_route(&one), None, "every condition must hold");
        assert_eq!(active.header_route(&wrong), None, "exact is case-sensitive");
        assert!(active.mirror_roll());
        assert_eq!(active.header_names().collect::<Vec<_>>(), vec!["beta"]);
        w.set_routes(
            "default/p",
            &ManagedRoutes {
                headers: Vec::new(),
                mirrors: vec![("copy".into(), 0)],
            },
        );
        let active = w.routes("default/p").expect("a 0% mirror is still a route");
        assert_eq!(active.header_route(&both), None);
        assert!(!active.mirror_roll());
        w.set_routes("default/p", &ManagedRoutes::default());
        assert!(w.routes("default/p").is_none());
        assert!(
            w.routes.load().is_empty(),
            "nothing left to check per request"
        );
        w.set_routes("default/p", &routes);
        w.remove("default/p");
        assert!(
            w.routes.load().is_empty(),
            "a removed policy loses its routes"
        );
    }
}
