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
