//! ServiceEntry: hosts and their endpoints, which is how subsets get
//! addresses without a Kubernetes API (STATIC endpoints with labels, or DNS).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

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
    /// Virtual IPs and CIDR ranges: a captured connection to one of them, on a declared port,
    /// is routed like the first of `hosts` (Istio's VIP routing).
    pub addresses: Vec<AddressRange>,
    /// Ports served.
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    pub location: Location,
    /// How endpoint addresses are found.
    pub resolution: Resolution,
    /// Endpoints (for STATIC, and DNS with explicit endpoints).
    pub endpoints: Vec<WorkloadEntry>,
}

/// A ServiceEntry address: one IP (a VIP) or a CIDR range, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    /// The network address as written.
    pub addr: IpAddr,
    /// Prefix length: 32 (IPv4) or 128 (IPv6) for a single address.
    pub prefix: u8,
}

impl AddressRange {
    /// True when `ip` lies in this range (an IPv4 range never holds an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let shift = 32 - u32::from(self.prefix);
                u32::from(net).checked_shr(shift).unwrap_or(0)
                    == u32::from(ip).checked_shr(shift).unwrap_or(0)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let shift = 128 - u32::from(self.prefix);
                u128::from(net).checked_shr(shift).unwrap_or(0)
                    == u128::from(ip).checked_shr(shift).unwrap_or(0)
            }
            _ => false,
        }
    }

    /// True for a CIDR range rather than one address.
    pub fn is_range(&self) -> bool {
        self.prefix < if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?}: the prefix length must be 0..={max}")),
            },
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_range() {
            write!(f, "{}/{}", self.addr, self.prefix)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

impl Serialize for AddressRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The port protocols Istio knows (`protocol.Parse`), upper case. HTTP, HTTP2, GRPC, GRPC-WEB
/// and HTTP_PROXY are HTTP; the others are passed through as TCP by the capture listeners.
pub(crate) const KNOWN_PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "HTTP_PROXY",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "UDP",
    "MONGO",
    "MYSQL",
    "REDIS",
];

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
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawServiceEntrySpec {
    hosts: Option<Vec<String>>,
    addresses: Option<Vec<String>>,
    ports: Option<Vec<RawPort>>,
    location: Option<String>,
    resolution: Option<String>,
    endpoints: Option<Vec<RawEndpoint>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawPort {
    number: Option<u32>,
    protocol: Option<String>,
    name: Option<String>,
    target_port: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
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
            if !protocol.is_empty() && !KNOWN_PROTOCOLS.contains(&protocol.as_str()) {
                cx.warn(
                    &join(&path, "protocol"),
                    format!(
                        "unknown protocol {protocol:?}: treated as unset, so captured connections to this port are sniffed"
                    ),
                );
            }
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
        let addresses = self.validate_addresses(&hosts, resolution, cx);
        ServiceEntry {
            metadata,
            hosts,
            addresses,
            ports,
            location,
            resolution,
            endpoints,
        }
    }

    /// `spec.addresses`, as Istio validates them: each an IP or a CIDR range, ranges only with
    /// NONE or STATIC resolution.
    fn validate_addresses(
        &self,
        hosts: &[String],
        resolution: Resolution,
        cx: &mut Ctx<'_>,
    ) -> Vec<AddressRange> {
        let mut addresses = Vec::new();
        for (i, raw) in self.addresses.iter().flatten().enumerate() {
            let path = format!("spec.addresses[{i}]");
            match raw.parse::<AddressRange>() {
                Ok(range) => {
                    if range.is_range() && resolution == Resolution::Dns {
                        cx.error(
                            &path,
                            "CIDR ranges are allowed only with resolution NONE or STATIC",
                        );
                    }
                    addresses.push(range);
                }
                Err(message) => cx.error(&path, message),
            }
        }
        if !addresses.is_empty() {
            if self.ports.as_ref().is_none_or(Vec::is_empty) {
                cx.warn(
                    "spec.addresses",
                    "no spec.ports: connections to these addresses are not routed",
                );
            }
            if let [first, _, ..] = hosts {
                cx.warn(
                    "spec.addresses",
                    format!("several hosts share these addresses: connections to them are routed as {first}"),
                );
            }
        }
        addresses
    }
}
