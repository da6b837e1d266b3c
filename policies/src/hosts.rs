//! Host names as Istio compares them: a short name (`reviews`) means
//! `reviews.<namespace>.svc.cluster.local` in the namespace of the document
//! that wrote it; names with a dot are taken as written. Comparison ignores
//! ASCII case and a trailing dot.

use crate::defaults;

/// The fully qualified form of `host` written in `namespace`.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.contains('.') || h.contains('*') || h.parse::<std::net::IpAddr>().is_ok() {
        h
    } else {
        format!("{h}.{namespace}.{}", defaults::CLUSTER_DOMAIN)
    }
}

/// Checks a VirtualService host: a DNS name (letters, digits, `-`, `_`, dots), optionally after
/// a `*` wildcard prefix, `*` alone, or an IP address. Anything else (a port, spaces, control
/// characters) could never equal a request's `Host`, so the route would be unreachable.
pub fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix('*').unwrap_or(host);
    let dns = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if host.is_empty() {
        return Err("host must not be empty".to_owned());
    }
    if dns || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    Err(format!(
        "host {host:?} is not a DNS name, a `*`-prefixed wildcard or an IP address"
    ))
}

/// Whether two hosts, each written in its own namespace, name the same service.
pub fn same_host(a: &str, a_namespace: &str, b: &str, b_namespace: &str) -> bool {
    fqdn(a, a_namespace) == fqdn(b, b_namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_take_the_namespace() {
        assert_eq!(
            fqdn("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert!(same_host(
            "reviews",
            "default",
            "reviews.default.svc.cluster.local",
            "other"
        ));
        assert!(!same_host("reviews", "default", "reviews", "prod"));
        assert!(same_host("Reviews.", "x", "reviews", "x"));
        assert_eq!(fqdn("api.example.com", "default"), "api.example.com");
    }
}
