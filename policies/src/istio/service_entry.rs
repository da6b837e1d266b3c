//! ServiceEntry: hosts and their endpoints, which is how subsets get
//! addresses without a Kubernetes API (STATIC endpoints with labels, or DNS).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::istio::common::ObjectMeta;
use crate::yaml::join;

/// A validated ServiceEntry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceEntry {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// Virtual IPs (informational).
    pub addresses: Vec<String>,
    /// Ports served.
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    pub location: Location,
    /// How endpoint addresses are found.
    pub resolution: Resolution,
    /// Endpoints (for STATIC, and DNS with explicit endpoints).
    pub endpoints: Vec<WorkloadEntry>,
}

/// A port of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    /// Port number.
    pub number: u32,
    /// Protocol (HTTP, HTTP2, GRPC, TCP...).
    pub protocol: String,
    /// Port name, referenced by endpoint `ports`.
    pub name: String,
    /// Port on the endpoints, when different.
    pub target_port: Option<u32>,
}

/// `location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Location {
    /// Outside the mesh (default).
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resolution {
    /// Use the original destination address.
    None,
    /// Use the listed endpoint addresses.
    Static,
    /// Resolve the hosts (or endpoint addresses) by DNS.
    Dns,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadEntry {
    /// IP address or DNS name.
    pub address: String,
    /// Port name → endpoint port number.
    pub ports: BTreeMap<String, u32>,
    /// Labels (subsets select on these).
    pub labels: BTreeMap<String, String>,
}

impl ServiceEntry {
    /// The endpoint port for `endpoint` on service port `port`: the endpoint's
    /// own mapping, else `targetPort`, else the service port number.
    pub fn endpoint_port(&self, endpoint: &WorkloadEntry, port: &ServicePort) -> u32 {
        endpoint
            .ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }
}

/// Raw `spec` of a ServiceEntry.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawServiceEntrySpec {
    hosts: Option<Vec<String>>,
    addresses: Option<Vec<String>>,
    ports: Option<Vec<RawPort>>,
    location: Option<String>,
    resolution: Option<String>,
    endpoints: Option<Vec<RawEndpoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPort {
    number: Option<u32>,
    protocol: Option<String>,
    name: Option<String>,
    target_port: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RawEndpoint {
    address: Option<String>,
    ports: Option<BTreeMap<String, u32>>,
    labels: Option<BTreeMap<String, String>>,
}

impl RawServiceEntrySpec {
    pub(crate) fn validate(&self, metadata: ObjectMeta, cx: &mut Ctx<'_>) -> ServiceEntry {
        let hosts = self.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            cx.error("spec.hosts", "at least one host is required");
        }
        let mut ports: Vec<ServicePort> = Vec::new();
        for (i, p) in self.ports.iter().flatten().enumerate() {
            let path = format!("spec.ports[{i}]");
            let number = match p.number {
                Some(n) if (1..=65535).contains(&n) => n,
                Some(n) => {
                    cx.error(
                        &join(&path, "number"),
                        format!("port must be in 1..=65535, got {n}"),
                    );
                    continue;
                }
                None => {
                    cx.error(&join(&path, "number"), "is required");
                    continue;
                }
            };
            let name = p.name.clone().unwrap_or_default();
            if !name.is_empty() && ports.iter().any(|o| o.name == name) {
                cx.error(
                    &join(&path, "name"),
                    format!("duplicate port name {name:?}"),
                );
            }
            let protocol = p.protocol.clone().unwrap_or_default().to_ascii_uppercase();
            ports.push(ServicePort {
                number,
                protocol,
                name,
                target_port: p.target_port,
            });
        }
        let location = match self.location.as_deref() {
            None | Some("MESH_EXTERNAL") => Location::MeshExternal,
            Some("MESH_INTERNAL") => Location::MeshInternal,
            Some(other) => {
                cx.error(
                    "spec.location",
                    format!("unknown location {other:?} (expected MESH_EXTERNAL or MESH_INTERNAL)"),
                );
                Location::MeshExternal
            }
        };
        let resolution = match self.resolution.as_deref() {
            None | Some("NONE") => Resolution::None,
            Some("STATIC") => Resolution::Static,
            Some("DNS") => Resolution::Dns,
            Some("DNS_ROUND_ROBIN") => {
                cx.warn("spec.resolution", "DNS_ROUND_ROBIN is treated as DNS");
                Resolution::Dns
            }
            Some(other) => {
                cx.error(
                    "spec.resolution",
                    format!("unknown resolution {other:?} (expected NONE, STATIC or DNS)"),
                );
                Resolution::None
            }
        };
        let mut endpoints = Vec::new();
        for (i, e) in self.endpoints.iter().flatten().enumerate() {
            let path = format!("spec.endpoints[{i}]");
            let Some(address) = e.address.clone().filter(|a| !a.is_empty()) else {
                cx.error(&join(&path, "address"), "is required");
                continue;
            };
            if resolution == Resolution::Static && address.parse::<std::net::IpAddr>().is_err() {
                cx.error(
                    &join(&path, "address"),
                    format!("STATIC resolution needs an IP address, got {address:?}"),
                );
            }
            for name in e.ports.iter().flatten().map(|(k, _)| k) {
                if !ports.iter().any(|p| &p.name == name) {
                    cx.error(
                        &join(&join(&path, "ports"), name),
                        format!("port name {name:?} is not declared in spec.ports"),
                    );
                }
            }
            endpoints.push(WorkloadEntry {
                address,
                ports: e.ports.clone().unwrap_or_default(),
                labels: e.labels.clone().unwrap_or_default(),
            });
        }
        if resolution == Resolution::Static && self.endpoints.as_ref().is_none_or(Vec::is_empty) {
            cx.error(
                "spec.resolution",
                "STATIC resolution needs at least one endpoint",
            );
        }
        ServiceEntry {
            metadata,
            hosts,
            addresses: self.addresses.clone().unwrap_or_default(),
            ports,
            location,
            resolution,
            endpoints,
        }
    }
}
