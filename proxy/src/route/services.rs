//! The services transparent capture knows by address and port: ServiceEntry `addresses` (VIPs
//! and CIDR ranges) and the protocol each known port declares.
//!
//! Istio gives a sidecar one outbound listener per service port: HTTP ports (and ports whose
//! protocol is unset, which it sniffs) are `0.0.0.0:<port>` listeners that route by Host, other
//! ports are `<VIP>:<port>` TCP listeners, and a port no service declares reaches only the
//! passthrough chain (plain TCP to the original destination). [`Services::outbound`] makes the
//! same decision for a captured connection from its original destination.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use augur_policies::hosts::fqdn;
use augur_policies::{AddressRange, PolicySet};

use super::{Cluster, Route};

/// What a port's declared protocol means for a captured connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// HTTP, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY: detected (then routed when it is HTTP).
    Http,
    /// No protocol declared (or one Istio does not know): detected, as Istio's auto detection.
    Unset,
    /// TCP, TLS, HTTPS, MONGO, MYSQL, REDIS, UDP: passed through without waiting for bytes.
    Opaque,
}

impl PortProtocol {
    /// Reads a ServiceEntry port's `protocol` (already upper case).
    pub fn of(declared: &str) -> Self {
        match declared {
            "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" => Self::Http,
            "HTTPS" | "TLS" | "TCP" | "UDP" | "MONGO" | "MYSQL" | "REDIS" => Self::Opaque,
            _ => Self::Unset,
        }
    }

    /// True when a connection on this port has its first bytes inspected.
    pub fn sniffed(self) -> bool {
        self != Self::Opaque
    }
}

/// One ServiceEntry address on one of its ports.
#[derive(Debug)]
pub struct Vip {
    /// The address or range.
    pub range: AddressRange,
    /// The service port.
    pub port: u16,
    /// The port's protocol.
    pub protocol: PortProtocol,
    /// The ServiceEntry host it stands for (its first host), as an FQDN.
    pub host: String,
    /// The VirtualService serving `host`, when one does (index into the route table's hosts).
    pub(super) virtual_host: Option<usize>,
    /// The host's cluster on this port (`outbound|<port>||<host>`), for opaque connections and
    /// for HTTP when no VirtualService serves the host.
    pub cluster: Arc<Cluster>,
    /// Resolution NONE: connections keep their original destination (`cluster` has no
    /// endpoints and only names them), as Istio's ORIGINAL_DST cluster.
    pub original_destination: bool,
    /// The route HTTP takes when no VirtualService serves the host: all to `cluster` (none
    /// with resolution NONE, whose requests are passed through).
    pub(super) default_route: Option<Arc<Route>>,
}

/// What a captured outbound connection gets, from its original destination.
#[derive(Debug, Clone, Copy)]
pub enum Outbound<'a> {
    /// Read its first bytes: HTTP is routed, anything else passed through as TCP (to the
    /// VIP's service when it has one).
    Detect(Option<&'a Vip>),
    /// TCP straight away: to the VIP's service, else to the original destination.
    Tcp(Option<&'a Vip>),
}

/// Every VIP and declared port of the policy set.
#[derive(Debug, Default)]
pub struct Services {
    /// Most specific range first, then in policy order.
    vips: Vec<Vip>,
    /// Port number → its protocol, merged over every known service: detected when any service
    /// declares it HTTP or leaves it unset.
    ports: HashMap<u16, PortProtocol>,
}

impl Services {
    /// The decision for a connection the outbound capture listener accepted, going to `dst`.
    pub fn outbound(&self, dst: SocketAddr) -> Outbound<'_> {
        if let Some(vip) = self.vip(dst) {
            return if vip.protocol.sniffed() {
                Outbound::Detect(Some(vip))
            } else {
                Outbound::Tcp(Some(vip))
            };
        }
        match self.ports.get(&dst.port()) {
            Some(p) if p.sniffed() => Outbound::Detect(None),
            _ => Outbound::Tcp(None),
        }
    }

    /// True when inbound connections to `port` are inspected: every port but one a known
    /// service declares only as opaque (Istio's inbound passthrough chains sniff too).
    pub fn inbound_sniffed(&self, port: u16) -> bool {
        self.ports.get(&port).is_none_or(|p| p.sniffed())
    }

    /// The VIP `dst` belongs to, on a port its ServiceEntry declares.
    pub fn vip(&self, dst: SocketAddr) -> Option<&Vip> {
        self.vips
            .iter()
            .find(|v| v.port == dst.port() && v.range.contains(dst.ip()))
    }

    /// Records that a service declares `port` with `protocol`.
    pub(super) fn declare(&mut self, port: u16, protocol: PortProtocol) {
        let merged = match (self.ports.get(&port), protocol) {
            (Some(PortProtocol::Http), _) | (_, PortProtocol::Http) => PortProtocol::Http,
            (Some(PortProtocol::Unset), _) | (_, PortProtocol::Unset) => PortProtocol::Unset,
            _ => PortProtocol::Opaque,
        };
        self.ports.insert(port, merged);
    }

    /// Adds a VIP; [`Services::finish`] orders them.
    pub(super) fn add(&mut self, vip: Vip) {
        self.vips.push(vip);
    }

    /// Orders the VIPs most specific first (a stable sort keeps policy order among equals).
    pub(super) fn finish(&mut self) {
        self.vips
            .sort_by_key(|v| std::cmp::Reverse((v.range.addr.is_ipv6(), v.range.prefix)));
    }

    /// Every VIP, most specific first.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }
}

/// The ports the policy set declares: every ServiceEntry port with its protocol, and the ports
/// VirtualServices use (`destination.port`, `match.port`, else 80 for a host no ServiceEntry
/// lists, which is where augur sends a destination without a port) as HTTP, since their
/// routes are HTTP routes.
pub(super) fn declared_ports(set: &PolicySet, services: &mut Services) {
    for se in &set.service_entries {
        for port in &se.ports {
            if let Ok(number) = u16::try_from(port.number) {
                services.declare(number, PortProtocol::of(&port.protocol));
            }
        }
    }
    for vs in &set.virtual_services {
        let ns = vs.metadata.namespace.as_str();
        let mut named = false;
        for http in &vs.http {
            let destination_ports = http.route.iter().filter_map(|d| d.destination.port);
            let match_ports = http.matches.iter().filter_map(|m| m.port);
            for port in destination_ports.chain(match_ports) {
                if let Ok(port) = u16::try_from(port) {
                    services.declare(port, PortProtocol::Http);
                    named = true;
                }
            }
        }
        let unlisted = vs.hosts.iter().any(|h| {
            !h.contains('*')
                && !set.service_entries.iter().any(|se| {
                    se.hosts
                        .iter()
                        .any(|s| fqdn(s, &se.metadata.namespace) == fqdn(h, ns))
                })
        });
        if unlisted && !named {
            services.declare(80, PortProtocol::Http);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_as_istio_reads_them() {
        assert_eq!(PortProtocol::of("HTTP"), PortProtocol::Http);
        assert_eq!(PortProtocol::of("GRPC"), PortProtocol::Http);
        assert_eq!(PortProtocol::of(""), PortProtocol::Unset);
        assert_eq!(PortProtocol::of("THRIFT"), PortProtocol::Unset);
        for opaque in ["TCP", "TLS", "HTTPS", "MYSQL", "MONGO", "REDIS"] {
            assert!(!PortProtocol::of(opaque).sniffed(), "{opaque}");
        }
    }

    fn vip(range: &str, port: u16, protocol: PortProtocol, host: &str) -> Vip {
        let cluster = Cluster::new(
            format!("outbound|{port}||{host}"),
            host.into(),
            None,
            vec![],
        );
        Vip {
            range: range.parse().expect("range"),
            port,
            protocol,
            host: host.into(),
            virtual_host: None,
            cluster: Arc::new(cluster),
            original_destination: false,
            default_route: None,
        }
    }

    #[test]
    fn the_most_specific_vip_on_the_dialled_port_wins() {
        let mut services = Services::default();
        services.add(vip("10.1.0.0/16", 5432, PortProtocol::Opaque, "range"));
        services.add(vip("10.1.2.3", 5432, PortProtocol::Opaque, "one"));
        services.add(vip("10.1.2.3", 80, PortProtocol::Http, "web"));
        services.add(vip("fd00::/8", 5432, PortProtocol::Opaque, "v6"));
        services.finish();
        let host = |dst: &str| {
            services
                .vip(dst.parse().expect("addr"))
                .map(|v| v.host.as_str())
        };
        assert_eq!(host("10.1.2.3:5432"), Some("one"));
        assert_eq!(host("10.1.9.9:5432"), Some("range"));
        assert_eq!(host("10.1.2.3:80"), Some("web"));
        assert_eq!(
            host("10.1.2.3:81"),
            None,
            "a port the entry does not declare"
        );
        assert_eq!(host("10.2.0.1:5432"), None);
        assert_eq!(host("[fd00::1]:5432"), Some("v6"));
        let at = |dst: &str| services.outbound(dst.parse().expect("addr"));
        assert!(matches!(at("10.1.2.3:5432"), Outbound::Tcp(Some(_))));
        assert!(matches!(at("10.1.2.3:80"), Outbound::Detect(Some(_))));
    }

    #[test]
    fn a_port_is_detected_when_any_service_declares_it_http_or_unset() {
        let mut services = Services::default();
        services.declare(3306, PortProtocol::Opaque);
        services.declare(8080, PortProtocol::Opaque);
        services.declare(8080, PortProtocol::Unset);
        services.declare(80, PortProtocol::Http);
        services.declare(80, PortProtocol::Opaque);
        let at = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        assert!(matches!(services.outbound(at(3306)), Outbound::Tcp(None)));
        assert!(matches!(
            services.outbound(at(8080)),
            Outbound::Detect(None)
        ));
        assert!(matches!(services.outbound(at(80)), Outbound::Detect(None)));
        assert!(
            matches!(services.outbound(at(25)), Outbound::Tcp(None)),
            "an undeclared port is TCP without waiting"
        );
        assert!(!services.inbound_sniffed(3306));
        assert!(services.inbound_sniffed(25));
    }
}
