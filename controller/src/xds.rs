//! The fleet's routing as Envoy xDS v3 route configuration, so that a stock Envoy following the
//! controller (RDS over REST-JSON: it polls `POST /v3/discovery:routes`) carries the same
//! split as the sidecars.
//!
//! The translation is Istio's for what augur decides: one virtual host per VirtualService
//! (its hosts and their short and `:port` aliases as domains), one Envoy route per match block
//! (a route without one matches `prefix: /`), `weighted_clusters` named as Istio names
//! clusters (`outbound|<port>|<subset>|<fqdn>`), the weights a rollout set on the routes its
//! CanaryPolicy drives, the route timeout, and direct responses. A rollout's managed routes
//! are carried as Argo carries them to Istio: each header route is an extra route before the
//! weighted one (its matches added to the route's own, all to the canary cluster), and the
//! mirror routes are a `request_mirror_policies` entry to the canary cluster on the weighted
//! route. Retries, faults, the VirtualService's own mirrors, rewrites and header edits are
//! not carried (documented in `docs/fleet.md`).

use augur_model::fleet::FleetState;
use augur_policies::{
    CanaryPolicy, Destination, HttpMatchRequest, HttpRoute, PolicySet, StringMatch, VirtualService,
};
use serde_json::{json, Value};

/// The type URL of a route configuration.
pub const ROUTE_CONFIGURATION: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// A `DiscoveryResponse` holding route configuration `name` for the fleet's routing, at
/// `version` (the fleet state's, so Envoy sees a new version when the weights change).
pub fn discovery_response(set: &PolicySet, state: &FleetState, name: &str) -> Value {
    let virtual_hosts: Vec<Value> = set
        .virtual_services
        .iter()
        .map(|vs| virtual_host(set, state, vs))
        .collect();
    let config = json!({
        "@type": ROUTE_CONFIGURATION,
        "name": name,
        "virtual_hosts": virtual_hosts,
    });
    json!({
        "version_info": format!("{}-{}", state.controller, state.version),
        "type_url": ROUTE_CONFIGURATION,
        "resources": [config],
    })
}

fn virtual_host(set: &PolicySet, state: &FleetState, vs: &VirtualService) -> Value {
    let ns = vs.metadata.namespace.as_str();
    let mut domains = Vec::new();
    for host in &vs.hosts {
        for alias in aliases(host, ns) {
            domains.push(alias.clone());
            domains.push(format!("{alias}:*"));
        }
    }
    domains.dedup();
    let mut routes = Vec::new();
    for http in &vs.http {
        let policy = driving_policy(set, vs, http);
        let action = action(set, state, ns, http, policy);
        let Some(mut action) = action else { continue };
        let managed = managed(set, state, ns, http, policy);
        if let (Some(m), Some(route)) = (&managed, action.get_mut("route")) {
            if m.mirror > 0.0 {
                route["request_mirror_policies"] = json!([{
                    "cluster": m.canary,
                    "runtime_fraction": {"default_value": {
                        "numerator": (m.mirror * 1e6).round() as u64,
                        "denominator": "MILLION",
                    }},
                }]);
            }
        }
        let blocks: Vec<Option<&HttpMatchRequest>> = if http.matches.is_empty() {
            vec![None]
        } else {
            http.matches.iter().map(Some).collect()
        };
        for block in blocks {
            for m in managed.iter() {
                for header_route in &m.headers {
                    let mut matched = route_match(block);
                    let extra = header_matchers(header_route);
                    if let Some(list) = matched
                        .as_object_mut()
                        .map(|o| o.entry("headers").or_insert_with(|| json!([])))
                        .and_then(Value::as_array_mut)
                    {
                        list.extend(extra);
                    }
                    routes.push(json!({
                        "match": matched,
                        "route": {"cluster": m.canary, "timeout": timeout_of(http)},
                    }));
                }
            }
            let mut route = json!({"match": route_match(block)});
            if let (Some(object), Some(action)) = (route.as_object_mut(), action.as_object()) {
                object.extend(action.clone());
            }
            routes.push(route);
        }
    }
    json!({
        "name": format!("{ns}/{}", vs.metadata.name),
        "domains": domains,
        "routes": routes,
    })
}

/// The names a host answers to in its namespace: the FQDN, and for a cluster-local one the
/// short name and `name.namespace`.
fn aliases(host: &str, ns: &str) -> Vec<String> {
    let fqdn = augur_policies::hosts::fqdn(host, ns);
    let mut out = vec![fqdn.clone()];
    let local = format!(".{ns}.{}", augur_policies::defaults::CLUSTER_DOMAIN);
    if let Some(short) = fqdn.strip_suffix(&local) {
        out.push(short.to_owned());
        out.push(format!("{short}.{ns}"));
        out.push(format!("{short}.{ns}.svc"));
    }
    out
}

fn route_match(block: Option<&HttpMatchRequest>) -> Value {
    let mut m = serde_json::Map::new();
    let uri = block.and_then(|b| b.uri.as_ref());
    match uri {
        Some(StringMatch::Exact(p)) => m.insert("path".into(), json!(p)),
        Some(StringMatch::Regex(r)) => m.insert("safe_regex".into(), json!({"regex": r})),
        Some(StringMatch::Prefix(p)) => m.insert("prefix".into(), json!(p)),
        _ => m.insert("prefix".into(), json!("/")),
    };
    if block.is_some_and(|b| b.ignore_uri_case) {
        m.insert("case_sensitive".into(), json!(false));
    }
    let headers = header_matchers(block.map(|b| b.headers.as_slice()).unwrap_or_default());
    if !headers.is_empty() {
        m.insert("headers".into(), Value::Array(headers));
    }
    Value::Object(m)
}

/// Envoy `HeaderMatcher`s for header conditions.
fn header_matchers(headers: &[(String, StringMatch)]) -> Vec<Value> {
    headers
        .iter()
        .map(|(name, sm)| {
            let mut h = json!({"name": name});
            let matcher = match sm {
                StringMatch::Exact(v) => json!({"string_match": {"exact": v}}),
                StringMatch::Prefix(v) => json!({"string_match": {"prefix": v}}),
                StringMatch::Regex(v) => json!({"string_match": {"safe_regex": {"regex": v}}}),
                StringMatch::Present => json!({"present_match": true}),
            };
            if let (Some(h), Some(m)) = (h.as_object_mut(), matcher.as_object()) {
                h.extend(m.clone());
            }
            h
        })
        .collect()
}

/// A driven route's managed routes in force, for Envoy.
struct Managed {
    /// The canary's cluster.
    canary: String,
    /// Each header route's conditions.
    headers: Vec<Vec<(String, StringMatch)>>,
    /// The share of requests copied to the canary (0–1): one copy at most, as a sidecar makes.
    mirror: f64,
}

/// The managed routes of the rollout driving `http`, with the header routes' matches from the
/// controller's policy; `None` when it has none or the route has no canary destination.
fn managed(
    set: &PolicySet,
    state: &FleetState,
    ns: &str,
    http: &HttpRoute,
    policy: Option<&CanaryPolicy>,
) -> Option<Managed> {
    let policy = policy?;
    let key = format!("{}/{}", policy.metadata.namespace, policy.metadata.name);
    let routing = state.rollouts.iter().find(|r| r.policy == key)?;
    if routing.header_routes.is_empty() && routing.mirror_routes.is_empty() {
        return None;
    }
    let canary_ref = policy.canary.as_ref()?;
    let canary = http
        .route
        .iter()
        .find(|d| same(&d.destination, canary_ref, ns))
        .map(|d| cluster_name(set, &d.destination, ns))?;
    let names: Vec<&str> = routing.header_routes.iter().map(String::as_str).collect();
    let mirrors: Vec<(String, u8)> = routing
        .mirror_routes
        .iter()
        .map(|m| (m.name.clone(), m.percent))
        .collect();
    let step = routing.step.and_then(|s| s.checked_sub(1));
    let routes = augur_rollout::spec::managed_routes(policy, step, &names, &mirrors);
    let kept: f64 = routes
        .mirrors
        .iter()
        .map(|(_, p)| 1.0 - f64::from((*p).min(100)) / 100.0)
        .product();
    Some(Managed {
        canary,
        headers: routes.headers.into_iter().map(|h| h.matches).collect(),
        mirror: 1.0 - kept,
    })
}

/// The route's timeout as Envoy writes it (`0s`: none).
fn timeout_of(http: &HttpRoute) -> String {
    http.timeout
        .map_or_else(|| "0s".to_owned(), |t| format!("{}s", t.as_secs_f64()))
}

/// The route's action: weighted clusters (with a rollout's weights) or a direct response.
/// `None` for what the translation does not carry (redirects).
fn action(
    set: &PolicySet,
    state: &FleetState,
    ns: &str,
    http: &HttpRoute,
    policy: Option<&CanaryPolicy>,
) -> Option<Value> {
    if let Some(direct) = &http.direct_response {
        let body = match &direct.body {
            Some(augur_policies::DirectResponseBody::String(s)) => json!({"inline_string": s}),
            Some(augur_policies::DirectResponseBody::Bytes(b)) => json!({"inline_bytes": b}),
            None => json!({"inline_string": ""}),
        };
        return Some(json!({"direct_response": {"status": direct.status, "body": body}}));
    }
    if http.route.is_empty() {
        return None;
    }
    let routing = policy.and_then(|p| {
        let key = format!("{}/{}", p.metadata.namespace, p.metadata.name);
        state.rollouts.iter().find(|r| r.policy == key)
    });
    let clusters: Vec<Value> = http
        .route
        .iter()
        .map(|d| {
            let weight = match (policy, routing) {
                (Some(p), Some(r))
                    if p.canary
                        .as_ref()
                        .is_some_and(|c| same(&d.destination, c, ns)) =>
                {
                    u32::from(r.canary_weight)
                }
                (Some(_), Some(r)) => u32::from(r.stable_weight),
                _ => d.weight,
            };
            json!({"name": cluster_name(set, &d.destination, ns), "weight": weight})
        })
        .collect();
    let timeout = timeout_of(http);
    Some(json!({"route": {"weighted_clusters": {"clusters": clusters}, "timeout": timeout}}))
}

/// The CanaryPolicy that drives this route, if any.
fn driving_policy<'a>(
    set: &'a PolicySet,
    vs: &VirtualService,
    http: &HttpRoute,
) -> Option<&'a CanaryPolicy> {
    let route = http.name.as_deref()?;
    set.canary_policies.iter().find(|p| {
        p.metadata.namespace == vs.metadata.namespace
            && p.traffic_routing.virtual_service == vs.metadata.name
            && p.traffic_routing.routes.iter().any(|r| r == route)
    })
}

fn same(dest: &Destination, policy_dest: &augur_policies::DestinationRef, ns: &str) -> bool {
    augur_policies::hosts::fqdn(&dest.host, ns)
        == augur_policies::hosts::fqdn(&policy_dest.host, ns)
        && dest.subset == policy_dest.subset
}

/// Istio's name for a destination's cluster: `outbound|<port>|<subset>|<fqdn>`, the port from
/// the destination, else the host's ServiceEntry, else 80.
pub fn cluster_name(set: &PolicySet, dest: &Destination, ns: &str) -> String {
    let fqdn = augur_policies::hosts::fqdn(&dest.host, ns);
    let port = dest.port.or_else(|| {
        set.service_entries
            .iter()
            .find(|se| {
                se.hosts
                    .iter()
                    .any(|h| augur_policies::hosts::fqdn(h, &se.metadata.namespace) == fqdn)
            })
            .and_then(|se| se.ports.first().map(|p| p.number))
    });
    format!(
        "outbound|{}|{}|{fqdn}",
        port.unwrap_or(80),
        dest.subset.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_model::fleet::{RolloutRouting, FLEET_PROTOCOL};

    const POLICY: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: model, namespace: models}
spec:
  hosts: [model]
  http:
  - name: beta
    match: [{headers: {x-beta: {exact: "1"}}}]
    route: [{destination: {host: model, subset: v2}}]
  - name: primary
    timeout: 5s
    route:
    - destination: {host: model, subset: v1}
      weight: 100
    - destination: {host: model, subset: v2}
      weight: 0
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: model, namespace: models}
spec:
  host: model
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: model, namespace: models}
spec:
  trafficRouting:
    virtualService: {name: model, routes: [primary]}
  stable: {host: model, subset: v1}
  canary: {host: model, subset: v2}
  steps:
  - setWeight: 20
  - pause: {}
"#;

    #[test]
    fn the_driven_route_carries_the_rollouts_weights() {
        let loaded = augur_policies::load_str("p.yaml", POLICY).expect("valid policy");
        let state = FleetState {
            protocol: FLEET_PROTOCOL,
            version: 3,
            controller: "c".into(),
            decided_at_ms: 0,
            published_at_ms: 0,
            rollouts: vec![RolloutRouting {
                policy: "models/model".into(),
                policy_hash: "h".into(),
                stable: "model/v1".into(),
                canary: "model/v2".into(),
                stable_weight: 80,
                canary_weight: 20,
                phase: "progressing".into(),
                step: Some(1),
                changed_at_ms: 0,
                header_routes: Vec::new(),
                mirror_routes: Vec::new(),
            }],
        };
        let response = discovery_response(&loaded.set, &state, "outbound");
        assert_eq!(response["version_info"], "c-3");
        let vhost = &response["resources"][0]["virtual_hosts"][0];
        let domains = vhost["domains"].as_array().expect("domains");
        assert!(
            domains.contains(&json!("model"))
                && domains.contains(&json!("model.models.svc.cluster.local:*"))
        );
        let beta = &vhost["routes"][0];
        assert_eq!(beta["match"]["headers"][0]["string_match"]["exact"], "1");
        let primary = &vhost["routes"][1];
        assert_eq!(primary["match"]["prefix"], "/");
        assert_eq!(primary["route"]["timeout"], "5s");
        let clusters = &primary["route"]["weighted_clusters"]["clusters"];
        assert_eq!(
            clusters[0],
            json!({"name": "outbound|80|v1|model.models.svc.cluster.local", "weight": 80})
        );
        assert_eq!(
            clusters[1],
            json!({"name": "outbound|80|v2|model.models.svc.cluster.local", "weight": 20})
        );
        assert!(primary["route"].get("request_mirror_policies").is_none());
        assert_eq!(vhost["routes"].as_array().map(Vec::len), Some(2));
    }

    /// A header route is an extra route before the weighted one, to the canary cluster, with
    /// its matches; a mirror route is a mirror policy to the canary on the weighted route.
    #[test]
    fn managed_routes_become_a_header_route_and_a_mirror_policy() {
        let policy = POLICY.replace(
            "  - setWeight: 20\n  - pause: {}\n",
            "  - setWeight: 20\n  - setHeaderRoute:\n      name: b\n      match: [{headerName: X-Beta, headerValue: {prefix: \"t\"}}]\n  - setMirrorRoute: {name: m, percentage: 25}\n  - pause: {}\n",
        );
        let loaded = augur_policies::load_str("p.yaml", &policy).expect("valid policy");
        let state = FleetState {
            protocol: FLEET_PROTOCOL,
            version: 4,
            controller: "c".into(),
            decided_at_ms: 0,
            published_at_ms: 0,
            rollouts: vec![RolloutRouting {
                policy: "models/model".into(),
                policy_hash: "h".into(),
                stable: "model/v1".into(),
                canary: "model/v2".into(),
                stable_weight: 80,
                canary_weight: 20,
                phase: "paused".into(),
                step: Some(4),
                changed_at_ms: 0,
                header_routes: vec!["b".into()],
                mirror_routes: vec![augur_model::fleet::MirrorRouting {
                    name: "m".into(),
                    percent: 25,
                }],
            }],
        };
        let response = discovery_response(&loaded.set, &state, "outbound");
        let routes = &response["resources"][0]["virtual_hosts"][0]["routes"];
        assert_eq!(routes.as_array().map(Vec::len), Some(3), "{routes}");
        let header = &routes[1];
        assert_eq!(
            header["match"],
            json!({"prefix": "/", "headers": [{"name": "x-beta", "string_match": {"prefix": "t"}}]})
        );
        assert_eq!(
            header["route"],
            json!({"cluster": "outbound|80|v2|model.models.svc.cluster.local", "timeout": "5s"})
        );
        let weighted = &routes[2]["route"];
        assert_eq!(
            weighted["request_mirror_policies"],
            json!([{
                "cluster": "outbound|80|v2|model.models.svc.cluster.local",
                "runtime_fraction": {"default_value": {"numerator": 250_000, "denominator": "MILLION"}},
            }])
        );
        assert_eq!(weighted["weighted_clusters"]["clusters"][1]["weight"], 20);
    }
}
