//! Transparent capture: which listener a connection arrived on, and where it was going.
//!
//! iptables REDIRECTs a pod's outbound TCP to the outbound capture port (15001) and its inbound
//! TCP to the inbound capture port (15006); the kernel keeps the original destination, which
//! pingora reads with `SO_ORIGINAL_DST` (IPv4 and IPv6). Outbound HTTP is routed by
//! VirtualService like an explicit listener, and anything no policy covers goes on to its
//! original destination (Istio's ALLOW_ANY). Inbound traffic is forwarded to the local app at
//! its original destination from 127.0.0.6, so the capture rules let it through instead of
//! redirecting it back to augur.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pingora::proxy::Session;

/// The source address of inbound forwarding to the local app (Istio's `InboundPassthroughBindIpv4`).
pub const INBOUND_PASSTHROUGH_BIND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));

/// The capture listeners' ports, when transparent mode is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapturePorts {
    /// Outbound capture (Istio's 15001).
    pub outbound: Option<u16>,
    /// Inbound capture (Istio's 15006).
    pub inbound: Option<u16>,
}

/// The kind of listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// An explicit `--listen` address.
    Explicit,
    /// The outbound capture port.
    Outbound,
    /// The inbound capture port.
    Inbound,
}

impl CapturePorts {
    /// Which listener accepted the session's connection.
    pub fn listener(&self, session: &Session) -> Listener {
        let port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        self.listener_on(port)
    }

    /// Which listener has the local port `port`.
    pub fn listener_on(&self, port: Option<u16>) -> Listener {
        match port {
            Some(p) if Some(p) == self.inbound => Listener::Inbound,
            Some(p) if Some(p) == self.outbound => Listener::Outbound,
            _ => Listener::Explicit,
        }
    }
}

/// Where a redirected connection was going; `None` when it was not redirected (the original
/// destination is the listener itself, and forwarding there would loop).
pub fn original_dst(session: &Session) -> Option<SocketAddr> {
    let digest = session.downstream_session.digest()?;
    let dst = digest
        .socket_digest
        .as_ref()?
        .original_dst()?
        .as_inet()
        .copied()?;
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    (Some(dst) != local).then_some(dst)
}

/// The route of an outbound request no VirtualService host matched, when its connection was
/// going to a ServiceEntry VIP: routed like the entry's host (see
/// [`crate::route::RouteTable::find_by_vip`]).
pub(super) fn route_by_vip<'a>(
    routes: &'a crate::route::RouteTable,
    session: &Session,
    view: &crate::route::RequestView<'_>,
) -> Option<&'a std::sync::Arc<crate::route::Route>> {
    routes.find_by_vip(original_dst(session)?, view)
}

/// The port the client dialled: the original destination's for a captured connection (what a
/// VirtualService `match.port` means), else the listener's.
pub(super) fn dialled_port(session: &Session) -> u16 {
    original_dst(session)
        .map(|dst| dst.port())
        .or_else(|| {
            session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port())
        })
        .unwrap_or(0)
}

/// The local address of an upstream connection, from its digest.
pub(super) fn upstream_local(digest: Option<&pingora::protocols::Digest>) -> Option<SocketAddr> {
    digest?
        .socket_digest
        .as_ref()?
        .local_addr()?
        .as_inet()
        .copied()
}

/// How Istio's access log names a captured request: the downstream local address is the
/// original destination; a request passed through outbound goes to `PassthroughCluster` by
/// route `allow_any`, one delivered inbound to `inbound|<port>||` by route `default`.
pub(super) struct LogNames {
    original: Option<SocketAddr>,
    cluster: Option<String>,
    route: Option<&'static str>,
}

impl LogNames {
    /// The names for the request of `ctx` on `session`.
    pub(super) fn of(session: &Session, ctx: &super::RequestCtx) -> Self {
        let (cluster, route) = match ctx.passthrough {
            Some(dst) if ctx.inbound => (Some(inbound_cluster(dst.port())), Some("default")),
            Some(_) => (Some(PASSTHROUGH_CLUSTER.to_owned()), Some("allow_any")),
            None => (None, None),
        };
        Self {
            original: original_dst(session),
            cluster,
            route,
        }
    }

    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    pub(super) fn local(&self, session: &Session) -> Option<SocketAddr> {
        self.original
            .or_else(|| session.server_addr().and_then(|a| a.as_inet()).copied())
    }

    /// `%UPSTREAM_CLUSTER_RAW%`.
    pub(super) fn cluster<'a>(&'a self, ctx: &'a super::RequestCtx) -> Option<&'a str> {
        self.cluster
            .as_deref()
            .or_else(|| ctx.cluster.as_deref().map(|c| c.name.as_str()))
    }

    /// `%ROUTE_NAME%`.
    pub(super) fn route<'a>(&self, ctx: &'a super::RequestCtx) -> Option<&'a str> {
        self.route
            .or_else(|| ctx.route.as_deref().map(|r| r.name.as_str()))
    }
}

/// Istio's cluster for traffic to a destination no service covers.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// Istio's cluster for traffic delivered to the local app on `port`.
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}
