//! Validated capture options: what istio-iptables' flags mean, as values.
//!
//! The flags arrive as strings (`-b '*'`, `-d 15090,15021`, `-i 10.0.0.0/8`); this module turns
//! them into typed selections once, so that [`super::plan`] is a total function over valid
//! options. An empty list means "none" and `*` means "all", exactly as in istio-iptables.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use thiserror::Error;

/// Why a flag value was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CaptureError {
    /// A port list held something that is not a port number.
    #[error("{flag}: {value:?} is not a port number (1-65535)")]
    InvalidPort {
        /// The flag, e.g. `-d`.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// A CIDR list held something that is not an IPv4 address or CIDR.
    #[error("{flag}: {value:?} is not an IPv4 address or CIDR")]
    InvalidCidr {
        /// The flag, e.g. `-x`.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// IPv6 ranges would need ip6tables rules, which augur does not write yet.
    #[error("{flag}: {value:?} is an IPv6 range; augur init writes IPv4 rules only")]
    Ipv6Unsupported {
        /// The flag, e.g. `-i`.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// A uid or gid list held something that is not a number.
    #[error("{flag}: {value:?} is not a numeric id")]
    InvalidId {
        /// The flag, `-u` or `-g`.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// Only REDIRECT interception is implemented.
    #[error("-m: interception mode {0:?} is not supported (only REDIRECT)")]
    UnsupportedMode(String),
    /// An interface name that iptables would reject.
    #[error("{flag}: {value:?} is not a valid interface name")]
    InvalidInterface {
        /// The flag, `-k` or `-c`.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
}

/// A set of ports: every port (`*`) or an explicit list (empty = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelection {
    /// `*`: every port.
    All,
    /// These ports only; empty means no port.
    List(Vec<u16>),
}

impl PortSelection {
    /// Parses istio-iptables' syntax: `*`, or comma-separated ports (blank items ignored).
    pub fn parse(flag: &'static str, value: &str) -> Result<Self, CaptureError> {
        if value.trim() == "*" {
            return Ok(Self::All);
        }
        parse_ports(flag, value).map(Self::List)
    }

    /// True when nothing is selected.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::List(ports) if ports.is_empty())
    }
}

/// A set of IPv4 destinations: every address (`*`) or a list of CIDRs (empty = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSelection {
    /// `*`: every destination.
    All,
    /// These ranges only; empty means none.
    List(Vec<Ipv4Cidr>),
}

impl CidrSelection {
    /// Parses `*` or a comma-separated list of CIDRs or bare addresses.
    pub fn parse(flag: &'static str, value: &str) -> Result<Self, CaptureError> {
        if value.trim() == "*" {
            return Ok(Self::All);
        }
        parse_cidrs(flag, value).map(Self::List)
    }

    /// True when nothing is selected.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::List(cidrs) if cidrs.is_empty())
    }
}

/// An IPv4 network in CIDR notation; a bare address is a /32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The network address as written.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// True when `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, prefix.parse::<u8>().map_err(|_| ())?),
            None => (s, 32),
        };
        if prefix > 32 {
            return Err(());
        }
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| ())?;
        Ok(Self { addr, prefix })
    }
}

/// Interception mode (`-m`). TPROXY is recognised only to be rejected clearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptionMode {
    /// NAT REDIRECT to the capture ports (Istio's default).
    Redirect,
}

impl InterceptionMode {
    /// Parses `-m` (case-insensitive, like Istio).
    pub fn parse(value: &str) -> Result<Self, CaptureError> {
        match value.to_ascii_uppercase().as_str() {
            "" | "REDIRECT" => Ok(Self::Redirect),
            _ => Err(CaptureError::UnsupportedMode(value.to_string())),
        }
    }
}

/// Everything [`super::plan`] needs; build it with [`CaptureOptions::default`] (the injected
/// sidecar's values) or from the `augur init` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// `-p`: outbound capture port (15001).
    pub proxy_port: u16,
    /// `-z`: inbound capture port (15006).
    pub inbound_capture_port: u16,
    /// `-e`: HBONE tunnel port, never captured inbound (15008).
    pub inbound_tunnel_port: u16,
    /// `-u`: uids whose traffic is never captured (1337).
    pub proxy_uids: Vec<u32>,
    /// `-g`: gids whose traffic is never captured (defaults to the uids).
    pub proxy_gids: Vec<u32>,
    /// `-m`: interception mode.
    pub mode: InterceptionMode,
    /// `-b`: inbound ports to capture.
    pub inbound_ports: PortSelection,
    /// `-d`: inbound ports to leave alone (only meaningful with `-b '*'`).
    pub exclude_inbound_ports: Vec<u16>,
    /// `-i`: outbound destinations to capture.
    pub outbound_ranges: CidrSelection,
    /// `-x`: outbound destinations to leave alone (checked before `-i`).
    pub exclude_outbound_ranges: Vec<Ipv4Cidr>,
    /// `-q`: outbound ports always captured.
    pub include_outbound_ports: Vec<u16>,
    /// `-o`: outbound ports never captured (checked first).
    pub exclude_outbound_ports: Vec<u16>,
    /// `-k`: interfaces whose incoming traffic is treated as outbound.
    pub reroute_interfaces: Vec<String>,
    /// `-c`: interfaces left entirely alone.
    pub exclude_interfaces: Vec<String>,
}

impl Default for CaptureOptions {
    /// The injected sidecar's capture: `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x ""
    /// -b '*' -d 15090,15021,15020`.
    fn default() -> Self {
        Self {
            proxy_port: 15001,
            inbound_capture_port: 15006,
            inbound_tunnel_port: 15008,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            mode: InterceptionMode::Redirect,
            inbound_ports: PortSelection::All,
            exclude_inbound_ports: vec![15090, 15021, 15020],
            outbound_ranges: CidrSelection::All,
            exclude_outbound_ranges: Vec::new(),
            include_outbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            reroute_interfaces: Vec::new(),
            exclude_interfaces: Vec::new(),
        }
    }
}

/// Splits a comma-separated list, trimming items and dropping blanks.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Parses a comma-separated port list.
pub fn parse_ports(flag: &'static str, value: &str) -> Result<Vec<u16>, CaptureError> {
    split_list(value)
        .map(|item| match item.parse::<u16>() {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(CaptureError::InvalidPort {
                flag,
                value: item.to_string(),
            }),
        })
        .collect()
}

/// Parses a comma-separated CIDR list (IPv4 only).
pub fn parse_cidrs(flag: &'static str, value: &str) -> Result<Vec<Ipv4Cidr>, CaptureError> {
    split_list(value)
        .map(|item| {
            if item.contains(':') {
                return Err(CaptureError::Ipv6Unsupported {
                    flag,
                    value: item.to_string(),
                });
            }
            item.parse::<Ipv4Cidr>()
                .map_err(|()| CaptureError::InvalidCidr {
                    flag,
                    value: item.to_string(),
                })
        })
        .collect()
}

/// Parses a comma-separated list of numeric ids.
pub fn parse_ids(flag: &'static str, value: &str) -> Result<Vec<u32>, CaptureError> {
    split_list(value)
        .map(|item| {
            item.parse::<u32>().map_err(|_| CaptureError::InvalidId {
                flag,
                value: item.to_string(),
            })
        })
        .collect()
}

/// Parses a comma-separated interface list (names as the kernel allows them).
pub fn parse_interfaces(flag: &'static str, value: &str) -> Result<Vec<String>, CaptureError> {
    split_list(value)
        .map(|item| {
            let ok = item.len() < 16
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
            if ok {
                Ok(item.to_string())
            } else {
                Err(CaptureError::InvalidInterface {
                    flag,
                    value: item.to_string(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_star_list_and_empty() {
        assert_eq!(PortSelection::parse("-b", "*"), Ok(PortSelection::All));
        assert_eq!(
            PortSelection::parse("-b", "80, 8080,"),
            Ok(PortSelection::List(vec![80, 8080]))
        );
        assert!(PortSelection::parse("-b", "").map(|s| s.is_empty()) == Ok(true));
        assert!(PortSelection::parse("-b", "http").is_err());
        assert!(PortSelection::parse("-b", "0").is_err());
        assert!(CidrSelection::parse("-i", "").map(|s| s.is_empty()) == Ok(true));
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let cidrs = parse_cidrs("-i", "10.0.0.0/8,127.0.0.1").unwrap_or_default();
        assert_eq!(cidrs.len(), 2);
        assert!(cidrs[0].contains(Ipv4Addr::new(10, 9, 8, 7)));
        assert!(!cidrs[0].contains(Ipv4Addr::new(11, 0, 0, 1)));
        assert_eq!(cidrs[1].to_string(), "127.0.0.1/32");
        assert!(matches!(
            parse_cidrs("-x", "fd00::/8"),
            Err(CaptureError::Ipv6Unsupported { .. })
        ));
        assert!(parse_cidrs("-x", "10.0.0.0/33").is_err());
        let all = Ipv4Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
        };
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn modes_and_interfaces() {
        assert_eq!(
            InterceptionMode::parse("redirect"),
            Ok(InterceptionMode::Redirect)
        );
        assert!(InterceptionMode::parse("TPROXY").is_err());
        assert!(parse_interfaces("-c", "eth0,veth-1").is_ok());
        assert!(parse_interfaces("-c", "eth0;rm").is_err());
    }
}
