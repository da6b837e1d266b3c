//! Where a request goes: the first matching route of its virtual host, then a weighted (or
//! sticky) destination, a redirect or a direct response.

use std::sync::Arc;

use augur_model::Arm;
use bytes::Bytes;
use pingora::proxy::Session;

use super::capture;
use crate::local_reply::{LocalReply, NO_HEALTHY_UPSTREAM, NO_ROUTE};
use crate::policy_store::Snapshot;
use crate::route::rewrite::{self, RedirectFrom};
use crate::route::sticky::{self, KeySource};
use crate::route::{Action, Cluster, RequestView, Route, Split, WeightedCluster};
use crate::weights::RolloutWeights;

/// What the route phase decided.
pub(super) enum Decision {
    /// Answer with one of Envoy's local replies.
    Reply(LocalReply),
    /// Answer with a route's `directResponse` or `redirect`.
    Local {
        status: u16,
        body: Bytes,
        location: Option<String>,
    },
    /// Send the request upstream.
    Forward(Box<Forwarding>),
}

/// Where a request goes and how.
pub(super) struct Forwarding {
    pub(super) route: Arc<Route>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) arm: Arm,
    /// The consistent-hash key's hash, for sticky routes.
    pub(super) sticky: Option<u64>,
    /// The index of the chosen destination in the route's split (its header edits).
    pub(super) destination: usize,
    /// The path and query to forward when the route rewrites the path.
    pub(super) rewritten_path: Option<String>,
    /// The CanaryPolicy whose rollout this request is part of: the route's, when the policy
    /// splits on this side (a client's sidecar for an outbound policy, a stable pod's inbound
    /// listener for an inbound one).
    pub(super) rollout: Option<Arc<str>>,
}

/// Routes the session's request with the snapshot's routes and the rollouts' weights;
/// `inbound` tells whether it came in on the inbound capture listener.
pub(super) fn decide(
    snapshot: &Snapshot,
    weights: &RolloutWeights,
    session: &Session,
    inbound: bool,
) -> Decision {
    let req = session.req_header();
    let headers = &req.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header("host"))
        .unwrap_or("");
    let port = capture::dialled_port(session);
    let view = RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        authority,
        scheme: if is_tls(session) { "https" } else { "http" },
        port,
        header: &header,
    };
    let vip = || capture::route_by_vip(&snapshot.routes, session, &view);
    let Some(route) = snapshot.routes.find(&view).or_else(vip) else {
        return Decision::Reply(NO_ROUTE);
    };
    match &route.action {
        Action::DirectResponse { status, body } => Decision::Local {
            status: *status,
            body: body.clone(),
            location: None,
        },
        Action::Redirect(r) => {
            let from = RedirectFrom {
                scheme: view.scheme,
                authority,
                port,
                path: view.path,
                query: view.query,
            };
            Decision::Local {
                status: r.redirect_code,
                body: Bytes::new(),
                location: Some(rewrite::location(r, &from)),
            }
        }
        Action::Forward(split) => {
            let sticky = route.sticky.as_ref().and_then(|policy| {
                let key = KeySource {
                    header: &header,
                    query: req.uri.query(),
                    client_ip: session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip()),
                };
                sticky::hash(policy, &key)
            });
            let rollout = route
                .canary_policy
                .clone()
                .filter(|_| route.inbound == inbound);
            // Whose samples the request is: the driving policy's, or a blue-green preview's.
            let sampled = route
                .sample_policy
                .clone()
                .filter(|_| route.inbound == inbound);
            // In a stable pod's inbound split, stable is the local app: it needs no endpoints.
            let local = |chosen: &WeightedCluster| inbound && chosen.arm != Arm::Canary;
            // The rollout's managed routes (none: one load, nothing allocated).
            let managed = rollout.as_deref().and_then(|p| weights.routes(p));
            // A request a header route matches goes to the canary, whatever the weights.
            let by_header = managed
                .as_deref()
                .and_then(|m| m.header_route(&header))
                .and_then(|_| split.canary());
            let picked = by_header.or_else(|| pick(split, rollout.as_deref(), weights, sticky));
            // A request a mirror route picks is also copied to the canary, by the route's own
            // mirroring (the same route with the canary added as a mirror of every request).
            let route = match managed.as_deref().filter(|m| m.mirror_roll()) {
                Some(_) => route
                    .mirrored_to_canary()
                    .unwrap_or_else(|| Arc::clone(route)),
                None => Arc::clone(route),
            };
            match picked {
                Some((destination, chosen))
                    if local(chosen) || !chosen.cluster.endpoints.is_empty() =>
                {
                    let rewritten_path = route.rewritten_path(&view);
                    Decision::Forward(Box::new(Forwarding {
                        route,
                        cluster: Arc::clone(&chosen.cluster),
                        arm: chosen.arm,
                        sticky,
                        destination,
                        rewritten_path,
                        rollout: sampled,
                    }))
                }
                _ => Decision::Reply(NO_HEALTHY_UPSTREAM),
            }
        }
    }
}

/// Picks a destination: by the weights `rollout` set, when the request is part of one and it
/// has set them, else by the VirtualService's.
fn pick<'a>(
    split: &'a Split,
    rollout: Option<&str>,
    weights: &RolloutWeights,
    sticky: Option<u64>,
) -> Option<(usize, &'a WeightedCluster)> {
    // A sticky request's hash is its roll, so the same user lands on the same version.
    let roll = sticky.unwrap_or_else(rand::random::<u64>);
    match rollout.and_then(|p| weights.get(p)) {
        Some(w) => split.pick_with(roll, w),
        None => split.pick(roll),
    }
}

/// Whether the client connection is TLS.
pub(super) fn is_tls(session: &Session) -> bool {
    session
        .downstream_session
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}
