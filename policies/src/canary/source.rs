//! `analysis.source.prometheus`: the address augur reads a fleet's evidence from, checked when
//! the policy loads so that an address augur cannot use is an error with its line, never a
//! rollout that silently sees no data.

use serde::Serialize;

/// A Prometheus HTTP API base URL that augur can query: `http://host[:port][/prefix]`.
///
/// augur speaks plain HTTP/1.1 to Prometheus (in a mesh, the sidecar or a local proxy adds TLS);
/// `https://`, user info, queries, fragments, whitespace and control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrometheusAddress {
    /// `host:port` to connect to (port 80 when the address names none).
    pub host_port: String,
    /// The path prefix before `/api/v1/...` (e.g. `/prometheus` behind a gateway), without a
    /// trailing slash; empty for none.
    pub prefix: String,
}

impl PrometheusAddress {
    /// Parses an address, or says what is wrong with it.
    pub fn parse(address: &str) -> Result<Self, String> {
        if address.starts_with("https://") {
            return Err(format!(
                "{address:?}: https is not supported; use http:// (a mesh sidecar or a local proxy can add TLS)"
            ));
        }
        let Some(rest) = address.strip_prefix("http://") else {
            return Err(format!("{address:?}: expected http://host:port[/prefix]"));
        };
        if let Some(c) = address
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '"' | '\\'))
        {
            return Err(format!("{address:?}: must not contain {c:?}"));
        }
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("{address:?}: user info is not supported"));
        }
        let port_of = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{address:?}: port {p:?} is not a number in 1..=65535"))
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{address:?}: unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => port_of(p)?,
                None if after.is_empty() => 80,
                None => return Err(format!("{address:?}: unexpected {after:?} after the host")),
            };
            (
                if h.is_empty() {
                    String::new()
                } else {
                    format!("[{h}]")
                },
                port,
            )
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), port_of(p)?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() {
            return Err(format!("{address:?}: no host"));
        }
        let prefix = path.trim_end_matches('/');
        Ok(PrometheusAddress {
            host_port: format!("{host}:{port}"),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PrometheusAddress;

    #[test]
    fn usable_addresses_parse_and_others_say_why() {
        let p = PrometheusAddress::parse("http://prom:9090/prefix/").unwrap();
        assert_eq!(
            (p.host_port.as_str(), p.prefix.as_str()),
            ("prom:9090", "/prefix")
        );
        let p = PrometheusAddress::parse("http://prometheus.monitoring").unwrap();
        assert_eq!(
            (p.host_port.as_str(), p.prefix.as_str()),
            ("prometheus.monitoring:80", "")
        );
        let p = PrometheusAddress::parse("http://[::1]:9090").unwrap();
        assert_eq!(p.host_port, "[::1]:9090");
        assert_eq!(
            PrometheusAddress::parse("http://[::1]").unwrap().host_port,
            "[::1]:80"
        );
        for (bad, why) in [
            ("https://prom:9090", "https is not supported"),
            ("prom:9090", "expected http://"),
            ("http://", "no host"),
            ("http://:9090", "no host"),
            ("http://prom:90x", "not a number"),
            ("http://prom:0", "not a number"),
            ("http://prom:9090/a path", "must not contain ' '"),
            ("http://prom:9090/?x=1", "must not contain '?'"),
            ("http://user:pw@prom:9090", "user info"),
        ] {
            let e = PrometheusAddress::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
