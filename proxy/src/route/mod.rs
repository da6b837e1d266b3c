//! Routing: the VirtualService http routes compiled for fast lookup.
//!
//! [`RouteTable::compile`] turns a validated policy set into virtual hosts (one per VirtualService,
//! reachable by every alias of its hosts), ordered routes with compiled matches, and weighted
//! splits over clusters. [`RouteTable::find`] is the request-time lookup: first matching route
//! wins, as in Istio.

pub mod breakers;
pub mod cluster;
pub mod endpoints;
pub mod host;
pub mod matcher;
pub mod outlier;
pub mod path;
pub mod retry;
pub mod rewrite;
pub mod services;
pub mod split;
pub mod sticky;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use augur_model::Arm;
use augur_policies::{
    CanaryPolicy, DirectResponseBody, Headers, HttpFaultInjection, HttpRedirect, HttpRoute,
    PolicySet, Prediction,
};
use base64::Engine as _;

pub use cluster::Cluster;
pub use matcher::RequestView;
pub use retry::RetryPolicy;
pub use split::{Split, WeightedCluster};

use matcher::MatchBlock;

/// A policy set the routes could not be built from.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A route's match regex (one the policy validator let through).
    #[error("VirtualService {virtual_service}: route {route}: {source}")]
    Match {
        /// `namespace/name` of the VirtualService.
        virtual_service: String,
        /// The route.
        route: String,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
    /// An ApiProtection's key file or variable.
    #[error(transparent)]
    Protection(#[from] crate::protect::ProtectError),
    /// A DestinationRule's TLS certificate files.
    #[error("DestinationRule for {host}: trafficPolicy.tls: {source}")]
    Tls {
        /// The destination host.
        host: String,
        /// What is wrong with the files.
        #[source]
        source: upstream::TlsError,
    },
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to one of the weighted destinations.
    Forward(Split),
    /// Answer with a redirect.
    Redirect(HttpRedirect),
    /// Answer locally with a fixed status and body.
    DirectResponse {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: bytes::Bytes,
    },
}

/// One compiled http route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name (its `name`, else its index in the VirtualService).
    pub name: String,
    matches: Vec<MatchBlock>,
    /// What to do with a matching request.
    pub action: Action,
    /// Route timeout (`None`: disabled, Istio's default).
    pub timeout: Option<Duration>,
    /// Retries (Istio's default policy when the route has none).
    pub retry: RetryPolicy,
    /// Fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Header edits.
    pub headers: Headers,
    /// Path and authority rewrite.
    pub rewrite: Option<rewrite::Rewrite>,
    /// `namespace/name` of the CanaryPolicy driving this route, if any.
    pub canary_policy: Option<Arc<str>>,
    /// `namespace/name` of the CanaryPolicy this route's requests are samples of: the driving
    /// one, or the blue-green policy whose `previewRoute` this is (its requests are the canary
    /// evidence of the pre-promotion analysis; the rollout never sets this route's weights).
    pub sample_policy: Option<Arc<str>>,
    /// The CanaryPolicy splits this route in the stable pods' sidecars, on the requests they
    /// receive (`trafficRouting.sidecar: inbound`), not in the clients'.
    pub inbound: bool,
    /// How to read a prediction from the model's response (from the CanaryPolicy).
    pub prediction: Option<Prediction>,
    /// Shadow destinations and the share of requests each gets (`mirror`/`mirrors`).
    pub mirrors: Vec<(Arc<Cluster>, f64)>,
    /// Consistent-hash stickiness from the DestinationRule of the route's first destination.
    pub sticky: Option<augur_policies::ConsistentHash>,
    /// The CanaryPolicy's embedded shadow model share, in percent (the model itself lives in
    /// the snapshot, keyed by [`Route::canary_policy`]).
    pub shadow_percentage: Option<f64>,
    /// The ApiProtection of the route (API key, rate limit), if any.
    pub protection: Option<Arc<crate::protect::Protection>>,
    /// This route with its canary destination added as a mirror of every request, for the
    /// requests a rollout's mirror route copies ([`Route::mirrored_to_canary`]); built once.
    canary_mirror: std::sync::OnceLock<Option<Arc<Route>>>,
}

impl Route {
    /// This route, plus a copy of every request to its canary destination: what a request a
    /// rollout's mirror route picked is routed by, so that the usual mirroring (bounded queue,
    /// the primary never waits, drops counted) sends the copy. Built on first use and kept
    /// with the route; `None` when the route has no canary destination.
    pub fn mirrored_to_canary(&self) -> Option<Arc<Route>> {
        self.canary_mirror
            .get_or_init(|| {
                let Action::Forward(split) = &self.action else {
                    return None;
                };
                let canary = split.destinations().iter().find(|d| d.arm == Arm::Canary)?;
                let mut variant = self.clone();
                variant.canary_mirror = std::sync::OnceLock::new();
                variant.mirrors.push((Arc::clone(&canary.cluster), 100.0));
                Some(Arc::new(variant))
            })
            .clone()
    }

    /// The route Istio gives a service no VirtualService covers: everything to its cluster,
    /// with the default retry policy (the route is named `default`, as Istio's).
    fn to_service(cluster: Arc<Cluster>) -> Self {
        Self {
            name: "default".to_owned(),
            matches: Vec::new(),
            action: Action::Forward(Split::new(vec![WeightedCluster {
                cluster,
                weight: 1,
                arm: Arm::Stable,
                headers: Headers::default(),
            }])),
            timeout: None,
            retry: RetryPolicy::compile(None),
            fault: None,
            headers: Headers::default(),
            rewrite: None,
            canary_policy: None,
            sample_policy: None,
            inbound: false,
            prediction: None,
            mirrors: Vec::new(),
            sticky: None,
            shadow_percentage: None,
            canary_mirror: std::sync::OnceLock::new(),
            protection: None,
        }
    }

    fn matches(&self, req: &RequestView<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(req))
    }

    /// The path and query this route forwards the request with, when its `rewrite` changes
    /// the path (the part replaced depends on which match block selected the route).
    pub fn rewritten_path(&self, req: &RequestView<'_>) -> Option<String> {
        let rewrite = self.rewrite.as_ref().filter(|r| r.rewrites_path())?;
        let matched = self
            .matches
            .iter()
            .find(|m| m.matches(req))
            .and_then(MatchBlock::uri);
        rewrite.path(matched, req.path, req.query)
    }

    /// Whether the route splits its traffic over more than one destination.
    pub fn splits(&self) -> bool {
        matches!(&self.action, Action::Forward(split) if split.destinations().len() > 1)
    }

    /// The header edits of the destination at `index` of the route's split. Istio applies
    /// them after the route's when the route has one destination (it merges both lists), and
    /// before them when it has several (Envoy evaluates a weighted cluster's edits first).
    pub fn destination_headers(&self, index: usize) -> Option<&Headers> {
        match &self.action {
            Action::Forward(split) => split.destinations().get(index).map(|d| &d.headers),
            _ => None,
        }
    }
}

/// The routes of one VirtualService.
#[derive(Debug)]
pub struct VirtualHost {
    /// `namespace/name` of the VirtualService.
    pub name: String,
    /// Its http routes in order.
    pub routes: Vec<Arc<Route>>,
}

/// Every virtual host, indexed by host name.
#[derive(Debug, Default)]
pub struct RouteTable {
    vhosts: Vec<VirtualHost>,
    by_host: HashMap<String, usize>,
    wildcards: Vec<(String, usize)>,
    clusters: Vec<Arc<Cluster>>,
    services: services::Services,
}

impl RouteTable {
    /// Compiles the policy set. Destinations that do not resolve get clusters without endpoints
    /// (requests to them get 503 UH) rather than failing the whole set.
    pub fn compile(set: &PolicySet) -> Result<Self, CompileError> {
        let mut table = RouteTable::default();
        let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::new();
        let protections = crate::protect::compile(set)?;
        for vs in &set.virtual_services {
            let ns = vs.metadata.namespace.as_str();
            let vs_name = format!("{ns}/{}", vs.metadata.name);
            let known_arms = known_arms(set, vs);
            let mut routes = Vec::with_capacity(vs.http.len());
            for (i, http) in vs.http.iter().enumerate() {
                let name = http.name.clone().unwrap_or_else(|| i.to_string());
                let matches = http
                    .matches
                    .iter()
                    .map(MatchBlock::compile)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| CompileError::Match {
                        virtual_service: vs_name.clone(),
                        route: name.clone(),
                        source,
                    })?;
                let rewrite = http
                    .rewrite
                    .as_ref()
                    .map(rewrite::Rewrite::compile)
                    .transpose()
                    .map_err(|source| CompileError::Match {
                        virtual_service: vs_name.clone(),
                        route: name.clone(),
                        source,
                    })?;
                let policy = driving_policy(set, &vs.metadata.name, ns, http.name.as_deref());
                let preview = preview_policy(set, &vs.metadata.name, ns, http.name.as_deref());
                let arms = Arms {
                    policy: policy.or(preview),
                    known: &known_arms,
                };
                let action = compile_action(set, http, ns, &arms, &mut clusters)?;
                let mirrors = http
                    .mirrors
                    .iter()
                    .map(|m| {
                        let cluster = cluster_for(set, &m.destination, ns, &mut clusters)?;
                        Ok((cluster, m.percentage.value()))
                    })
                    .collect::<Result<_, CompileError>>()?;
                routes.push(Arc::new(Route {
                    name,
                    matches,
                    action,
                    timeout: http.timeout,
                    retry: RetryPolicy::compile(http.retries.as_ref()),
                    fault: http.fault.clone(),
                    headers: http.headers.clone(),
                    rewrite,
                    // A shadow-only policy drives no weight: the route's own split applies.
                    canary_policy: policy
                        .filter(|p| !p.is_shadow_only())
                        .map(|p| Arc::from(policy_key(p))),
                    sample_policy: policy.or(preview).map(|p| Arc::from(policy_key(p))),
                    inbound: policy.is_some_and(|p| {
                        p.traffic_routing.sidecar == augur_policies::Sidecar::Inbound
                    }),
                    prediction: policy.or(preview).and_then(|p| p.prediction.clone()),
                    mirrors,
                    sticky: sticky_policy(set, http, ns),
                    shadow_percentage: policy
                        .and_then(|p| p.shadow.as_ref())
                        .map(|s| s.mirror_percentage.value()),
                    protection: crate::protect::for_route(
                        &protections,
                        ns,
                        &vs.metadata.name,
                        http.name.as_deref(),
                    ),
                    canary_mirror: std::sync::OnceLock::new(),
                }));
            }
            let index = table.vhosts.len();
            table.vhosts.push(VirtualHost {
                name: vs_name,
                routes,
            });
            for h in &vs.hosts {
                if let Some(suffix) = h.strip_prefix('*') {
                    table.wildcards.push((suffix.to_ascii_lowercase(), index));
                } else {
                    for alias in host::aliases(h, ns) {
                        table.by_host.entry(alias).or_insert(index);
                    }
                }
            }
        }
        // Longest wildcard suffix first, so `*.a.b` wins over `*.b` and `*` comes last.
        table
            .wildcards
            .sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        compile_services(set, &mut table, &mut clusters)?;
        table.clusters = clusters.into_values().collect();
        table.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(table)
    }

    /// The virtual host serving `authority` (a Host header value, port allowed).
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let host = host::strip_port(authority);
        let index = self.by_host.get(host).copied().or_else(|| {
            let lower = host.to_ascii_lowercase();
            self.by_host.get(&lower).copied().or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(suffix, _)| lower.ends_with(suffix.as_str()))
                    .map(|(_, i)| *i)
            })
        })?;
        self.vhosts.get(index)
    }

    /// The first route of the request's virtual host whose matches hold.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        self.virtual_host(req.authority)?
            .routes
            .iter()
            .find(|r| r.matches(req))
    }

    /// The first route that serves a request whose connection was going to `dst`, when `dst`
    /// is a ServiceEntry VIP (or in one of its ranges) on a declared port: the routes of the
    /// VirtualService of the entry's host, else the host's default route, as Istio routes a
    /// VIP like its host. An entry with resolution NONE and no VirtualService has no route:
    /// its requests go on to their original destination.
    pub fn find_by_vip(&self, dst: SocketAddr, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        let vip = self.services.vip(dst)?;
        match vip.virtual_host {
            Some(index) => self
                .vhosts
                .get(index)?
                .routes
                .iter()
                .find(|r| r.matches(req)),
            None => vip.default_route.as_ref(),
        }
    }

    /// The VIPs and declared ports, for the capture listeners.
    pub fn services(&self) -> &services::Services {
        &self.services
    }

    /// Every cluster the routes can send to, by name.
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }
}

/// Rolls a percentage (0 to 100): `true` for that share of calls. Faults, mirrors and the
/// shadow model's share all roll with it.
pub fn percent_roll(percentage: f64) -> bool {
    percentage > 0.0 && rand::random::<f64>() * 100.0 < percentage
}

/// Indexes the declared ports and every ServiceEntry address on each of its ports, with the
/// cluster of the entry's first host there.
fn compile_services(
    set: &PolicySet,
    table: &mut RouteTable,
    clusters: &mut HashMap<String, Arc<Cluster>>,
) -> Result<(), CompileError> {
    let mut found = services::Services::default();
    services::declared_ports(set, &mut found);
    for se in set
        .service_entries
        .iter()
        .filter(|se| !se.addresses.is_empty())
    {
        let Some(first) = se.hosts.first() else {
            continue;
        };
        let ns = se.metadata.namespace.as_str();
        let host = augur_policies::hosts::fqdn(first, ns);
        let virtual_host = table
            .virtual_host(&host)
            .and_then(|vh| table.vhosts.iter().position(|v| std::ptr::eq(v, vh)));
        // Resolution NONE: the connection keeps its original destination (Istio's
        // ORIGINAL_DST cluster); the cluster only names it.
        let original_destination = se.resolution == augur_policies::Resolution::None;
        for port in &se.ports {
            let Ok(number) = u16::try_from(port.number) else {
                continue;
            };
            let cluster = if original_destination {
                let name = format!("outbound|{number}||{host}");
                Arc::new(Cluster::new(name, host.clone(), None, Vec::new()))
            } else {
                let dest = augur_policies::Destination {
                    host: first.clone(),
                    subset: None,
                    port: Some(port.number),
                };
                cluster_for(set, &dest, ns, clusters)?
            };
            let default_route =
                (!original_destination).then(|| Arc::new(Route::to_service(Arc::clone(&cluster))));
            for range in &se.addresses {
                found.add(services::Vip {
                    range: *range,
                    port: number,
                    protocol: services::PortProtocol::of(&port.protocol),
                    host: host.clone(),
                    virtual_host,
                    cluster: Arc::clone(&cluster),
                    original_destination,
                    default_route: default_route.clone(),
                });
            }
        }
    }
    found.finish();
    table.services = found;
    Ok(())
}

pub use augur_policies::policy_key;

/// The CanaryPolicy whose `trafficRouting` names this VirtualService route.
fn driving_policy<'a>(
    set: &'a PolicySet,
    vs_name: &str,
    namespace: &str,
    route: Option<&str>,
) -> Option<&'a CanaryPolicy> {
    let route = route?;
    set.canary_policies.iter().find(|p| {
        p.metadata.namespace == namespace
            && p.traffic_routing.virtual_service == vs_name
            && p.traffic_routing.routes.iter().any(|r| r == route)
    })
}

/// The blue-green CanaryPolicy whose `previewRoute` is this VirtualService route.
fn preview_policy<'a>(
    set: &'a PolicySet,
    vs_name: &str,
    namespace: &str,
    route: Option<&str>,
) -> Option<&'a CanaryPolicy> {
    let route = route?;
    set.canary_policies.iter().find(|p| {
        p.metadata.namespace == namespace
            && p.traffic_routing.virtual_service == vs_name
            && matches!(&p.strategy, augur_policies::Strategy::BlueGreen(bg)
                if bg.preview_route.as_deref() == Some(route))
    })
}

/// What the arm of a route's destinations is decided from.
struct Arms<'a> {
    /// The CanaryPolicy driving the route, if one does.
    policy: Option<&'a CanaryPolicy>,
    /// The arms the VirtualService's destinations play elsewhere ([`known_arms`]).
    known: &'a [(augur_policies::Destination, Arm)],
}

/// The arms a VirtualService's destinations play, so that a route that does not split (a
/// header-matched beta route sending everything to v2) labels its traffic with the version it
/// serves: first the stable and canary of every CanaryPolicy driving one of its routes, then, in
/// routes that split, the first destination as stable and the others as canary.
fn known_arms(
    set: &PolicySet,
    vs: &augur_policies::VirtualService,
) -> Vec<(augur_policies::Destination, Arm)> {
    let ns = &vs.metadata.namespace;
    let mut out: Vec<(augur_policies::Destination, Arm)> = Vec::new();
    let mut add = |d: augur_policies::Destination, arm: Arm| {
        if !out.iter().any(|(k, _)| same_destination(k, &d, ns)) {
            out.push((d, arm));
        }
    };
    let as_dest = |r: &augur_policies::DestinationRef| augur_policies::Destination {
        host: r.host.clone(),
        subset: r.subset.clone(),
        port: None,
    };
    for p in set.canary_policies.iter().filter(|p| {
        p.metadata.namespace == *ns && p.traffic_routing.virtual_service == vs.metadata.name
    }) {
        add(as_dest(&p.stable), Arm::Stable);
        if let Some(canary) = &p.canary {
            add(as_dest(canary), Arm::Canary);
        }
    }
    for http in vs.http.iter().filter(|h| h.route.len() > 1) {
        for (i, d) in http.route.iter().enumerate() {
            let arm = if i == 0 { Arm::Stable } else { Arm::Canary };
            add(d.destination.clone(), arm);
        }
    }
    out
}

fn same_destination(
    a: &augur_policies::Destination,
    b: &augur_policies::Destination,
    namespace: &str,
) -> bool {
    augur_policies::hosts::same_host(&a.host, namespace, &b.host, namespace) && a.subset == b.subset
}

/// The arm a destination plays: the CanaryPolicy's stable and canary when one drives the route;
/// otherwise the arm the destination plays elsewhere in its VirtualService; otherwise the first
/// destination is stable and the others canary (Istio's 80/20 convention).
fn arm_of(
    arms: &Arms<'_>,
    dest: &augur_policies::Destination,
    namespace: &str,
    index: usize,
) -> Arm {
    let same = |r: &augur_policies::DestinationRef| {
        augur_policies::hosts::same_host(&r.host, namespace, &dest.host, namespace)
            && r.subset == dest.subset
    };
    let by_position = if index == 0 { Arm::Stable } else { Arm::Canary };
    match arms.policy {
        Some(p) if p.canary.as_ref().is_some_and(same) => Arm::Canary,
        Some(p) if same(&p.stable) => Arm::Stable,
        Some(_) => by_position,
        None => arms
            .known
            .iter()
            .find(|(k, _)| same_destination(k, dest, namespace))
            .map_or(by_position, |(_, arm)| *arm),
    }
}

fn compile_action(
    set: &PolicySet,
    http: &HttpRoute,
    namespace: &str,
    arms: &Arms<'_>,
    clusters: &mut HashMap<String, Arc<Cluster>>,
) -> Result<Action, CompileError> {
    if let Some(redirect) = &http.redirect {
        return Ok(Action::Redirect(redirect.clone()));
    }
    if let Some(direct) = &http.direct_response {
        return Ok(Action::DirectResponse {
            status: direct.status,
            body: direct_body(direct.body.as_ref()),
        });
    }
    let destinations = http
        .route
        .iter()
        .enumerate()
        .map(|(index, d)| {
            Ok(WeightedCluster {
                cluster: cluster_for(set, &d.destination, namespace, clusters)?,
                weight: d.weight,
                arm: arm_of(arms, &d.destination, namespace, index),
                headers: d.headers.clone(),
            })
        })
        .collect::<Result<_, CompileError>>()?;
    Ok(Action::Forward(Split::new(destinations)))
}

/// The consistent-hash policy that applies to a route (its first destination's rule).
fn sticky_policy(
    set: &PolicySet,
    http: &HttpRoute,
    namespace: &str,
) -> Option<augur_policies::ConsistentHash> {
    set.hash_policy_for(http, namespace)
        .map(|(_, ch)| ch.clone())
}

/// The cluster of a destination, shared by every route that names it.
fn cluster_for(
    set: &PolicySet,
    dest: &augur_policies::Destination,
    namespace: &str,
    clusters: &mut HashMap<String, Arc<Cluster>>,
) -> Result<Arc<Cluster>, CompileError> {
    let resolved = endpoints::resolve(set, dest, namespace);
    let subset = dest.subset.clone();
    let name = format!(
        "outbound|{}|{}|{}",
        resolved.port,
        subset.as_deref().unwrap_or(""),
        resolved.host
    );
    if let Some(cluster) = clusters.get(&name) {
        return Ok(Arc::clone(cluster));
    }
    let policy = set
        .destination_rule_for(&dest.host, namespace)
        .map(|dr| dr.policy_for(subset.as_deref()).clone());
    // Istio speaks HTTP/2 to a port declared HTTP2 or GRPC, or when the rule asks for it.
    let declared_h2 = matches!(resolved.protocol.as_str(), "HTTP2" | "GRPC" | "GRPC-WEB");
    let mut cluster = Cluster::new(name.clone(), resolved.host, subset, resolved.endpoints);
    cluster.labels = resolved.labels;
    if declared_h2 {
        cluster.upstream.version = upstream::HttpVersion::Http2;
    }
    if let Some(p) = policy {
        let pool = &p.connection_pool;
        cluster.connect_timeout = pool.connect_timeout;
        cluster.idle_timeout = pool.http_idle_timeout;
        cluster.breakers = breakers::CircuitBreakers::from_pool(pool);
        cluster.close_after_request = pool.max_requests_per_connection == 1;
        if pool.max_requests_per_connection > 1 {
            tracing::warn!(
                host = %cluster.host,
                "connectionPool.http.maxRequestsPerConnection above 1 is not enforced by augur"
            );
        }
        if let Some(od) = p.outlier_detection {
            cluster.outlier = Some(outlier::Detector::new(od, cluster.endpoints.len()));
        }
        if let augur_policies::LoadBalancer::Simple(lb) = p.load_balancer {
            cluster.balancer = lb.into();
        }
        if pool.use_client_protocol {
            cluster.upstream.version = upstream::HttpVersion::Client;
        } else if pool.h2_upgrade {
            cluster.upstream.version = upstream::HttpVersion::Http2;
        }
        if let Some(tls) = &p.tls {
            cluster.upstream.tls =
                upstream::UpstreamTls::load(tls).map_err(|source| CompileError::Tls {
                    host: cluster.host.clone(),
                    source,
                })?;
        }
    }
    let cluster = Arc::new(cluster);
    clusters.insert(name, Arc::clone(&cluster));
    Ok(cluster)
}

/// A direct response body: text as written, `bytes` base64-decoded (undecodable input was
/// rejected by validation; an empty body stands in if it slipped through).
fn direct_body(body: Option<&DirectResponseBody>) -> bytes::Bytes {
    match body {
        None => bytes::Bytes::new(),
        Some(DirectResponseBody::String(s)) => bytes::Bytes::copy_from_slice(s.as_bytes()),
        Some(DirectResponseBody::Bytes(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(bytes::Bytes::from)
            .unwrap_or_default(),
    }
}
