//! The VirtualService routes CanaryPolicies drive, with the weights their files give the stable
//! and canary destinations. While a rollout runs, its own weights replace those: tools show both
//! (`/config_dump`) and a reload that edits them is warned about.

use serde::Serialize;

use crate::hosts::same_host;
use crate::{CanaryPolicy, DestinationRef, HttpRoute, PolicySet, VirtualService};

/// One driven route and the split its file writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrivenRoute {
    /// The driving CanaryPolicy, `namespace/name`.
    pub policy: String,
    /// The VirtualService, `namespace/name`.
    pub virtual_service: String,
    /// The route's name.
    pub route: String,
    /// Index of the VirtualService in [`PolicySet::virtual_services`].
    #[serde(skip)]
    pub vs_index: usize,
    /// Index of the route in the VirtualService's `http`.
    #[serde(skip)]
    pub route_index: usize,
    /// The stable destination's weight as written.
    pub stable_weight: u32,
    /// The canary destination's weight as written.
    pub canary_weight: u32,
}

fn is(d: &crate::Destination, vs: &VirtualService, r: &DestinationRef, ns: &str) -> bool {
    same_host(&d.host, &vs.metadata.namespace, &r.host, ns) && d.subset == r.subset
}

fn weight_of(route: &HttpRoute, vs: &VirtualService, r: &DestinationRef, ns: &str) -> u32 {
    route
        .route
        .iter()
        .filter(|d| is(&d.destination, vs, r, ns))
        .map(|d| d.weight)
        .sum()
}

/// Every route `policy` drives that exists in `set` (none for a shadow-only policy, which
/// changes no weight).
pub fn routes_of(set: &PolicySet, policy: &CanaryPolicy) -> Vec<DrivenRoute> {
    let Some(canary) = &policy.canary else {
        return Vec::new();
    };
    let ns = &policy.metadata.namespace;
    let vs_name = &policy.traffic_routing.virtual_service;
    let Some(vs_index) = set
        .virtual_services
        .iter()
        .position(|v| v.metadata.name == *vs_name && v.metadata.namespace == *ns)
    else {
        return Vec::new();
    };
    let vs = &set.virtual_services[vs_index];
    vs.http
        .iter()
        .enumerate()
        .filter_map(|(route_index, r)| {
            let name = r.name.as_ref()?;
            policy
                .traffic_routing
                .routes
                .contains(name)
                .then(|| DrivenRoute {
                    policy: format!("{ns}/{}", policy.metadata.name),
                    virtual_service: format!("{ns}/{vs_name}"),
                    route: name.clone(),
                    vs_index,
                    route_index,
                    stable_weight: weight_of(r, vs, &policy.stable, ns),
                    canary_weight: weight_of(r, vs, canary, ns),
                })
        })
        .collect()
}

/// Every driven route of every CanaryPolicy in `set`.
pub fn driven_routes(set: &PolicySet) -> Vec<DrivenRoute> {
    set.canary_policies
        .iter()
        .flat_map(|p| routes_of(set, p))
        .collect()
}

/// The driven routes of `new` whose written stable/canary weights differ from `old`'s (same
/// policy, VirtualService and route), each with the old route.
pub fn edited_weights(old: &PolicySet, new: &PolicySet) -> Vec<(DrivenRoute, DrivenRoute)> {
    let before = driven_routes(old);
    driven_routes(new)
        .into_iter()
        .filter_map(|n| {
            let o = before.iter().find(|o| {
                o.policy == n.policy && o.virtual_service == n.virtual_service && o.route == n.route
            })?;
            (o.stable_weight != n.stable_weight || o.canary_weight != n.canary_weight)
                .then(|| (o.clone(), n))
        })
        .collect()
}
