//! Resolves a route destination to endpoint addresses: ServiceEntry endpoints selected by the
//! DestinationRule subset's labels, else DNS (how Kubernetes Services resolve in a cluster).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use augur_policies::{Destination, PolicySet, Resolution, ServiceEntry};

use augur_policies::hosts::fqdn;

/// Port used when neither the destination nor a ServiceEntry names one.
const DEFAULT_PORT: u16 = 80;

/// The resolved form of one destination.
#[derive(Debug)]
pub struct Resolved {
    /// The destination host as an FQDN.
    pub host: String,
    /// The service port (what Istio puts in the cluster name).
    pub port: u16,
    /// The subset's labels (empty without a subset).
    pub labels: BTreeMap<String, String>,
    /// Endpoint addresses; empty when nothing resolved.
    pub endpoints: Vec<SocketAddr>,
    /// The ServiceEntry port's protocol (`HTTP`, `HTTP2`, `GRPC`, ...), upper case; empty when
    /// no ServiceEntry declares it.
    pub protocol: String,
}

/// Resolves `dest`, declared in `namespace`, against the policy set.
pub fn resolve(set: &PolicySet, dest: &Destination, namespace: &str) -> Resolved {
    let host = fqdn(&dest.host, namespace);
    let labels = subset_labels(set, &host, dest.subset.as_deref());
    let entry = set.service_entries.iter().find(|se| {
        se.hosts
            .iter()
            .any(|h| fqdn(h, &se.metadata.namespace) == host)
    });
    match entry {
        Some(se) => from_service_entry(se, dest, host, labels),
        None => {
            let port = dest
                .port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DEFAULT_PORT);
            let endpoints = dns(&dest.host, port);
            Resolved {
                host,
                port,
                labels,
                endpoints,
                protocol: String::new(),
            }
        }
    }
}

fn subset_labels(set: &PolicySet, host: &str, subset: Option<&str>) -> BTreeMap<String, String> {
    let Some(subset) = subset else {
        return BTreeMap::new();
    };
    set.destination_rules
        .iter()
        .filter(|dr| fqdn(&dr.host, &dr.metadata.namespace) == host)
        .flat_map(|dr| dr.subsets.iter())
        .find(|s| s.name == subset)
        .map(|s| s.labels.clone())
        .unwrap_or_default()
}

fn from_service_entry(
    se: &ServiceEntry,
    dest: &Destination,
    host: String,
    labels: BTreeMap<String, String>,
) -> Resolved {
    let port = match dest.port {
        Some(n) => se.ports.iter().find(|p| p.number == n),
        None => se.ports.first(),
    };
    let number = port
        .and_then(|p| u16::try_from(p.number).ok())
        .or_else(|| dest.port.and_then(|p| u16::try_from(p).ok()))
        .unwrap_or(DEFAULT_PORT);
    let endpoints = match se.resolution {
        Resolution::Static => se
            .endpoints
            .iter()
            .filter(|e| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            .filter_map(|e| {
                let target = port.map_or(u32::from(number), |p| se.endpoint_port(e, p));
                let target = u16::try_from(target).ok()?;
                e.address.parse().ok().map(|ip| SocketAddr::new(ip, target))
            })
            .collect(),
        _ => se.hosts.iter().flat_map(|h| dns(h, number)).collect(),
    };
    Resolved {
        host,
        port: number,
        labels,
        endpoints,
        protocol: port.map(|p| p.protocol.clone()).unwrap_or_default(),
    }
}

fn dns(host: &str, port: u16) -> Vec<SocketAddr> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(host, port, error = %e, "destination did not resolve; it has no endpoints");
            Vec::new()
        }
    }
}
