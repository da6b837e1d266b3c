//! Host header lookup: the names a client may use for a VirtualService host.
//!
//! Qualifying names is the policy crate's job ([`augur_policies::hosts::fqdn`]); this module
//! adds the request-time side: aliases to index by and stripping the port from `Host`.

use augur_policies::defaults::CLUSTER_DOMAIN;

/// The names a client may use for `host` declared in `namespace` (Host header values without
/// the port): the short name, `name.namespace`, `name.namespace.svc` and the FQDN.
pub fn aliases(host: &str, namespace: &str) -> Vec<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.contains('.') || host.contains('*') {
        return vec![host];
    }
    vec![
        host.clone(),
        format!("{host}.{namespace}"),
        format!("{host}.{namespace}.svc"),
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}"),
    ]
}

/// The host part of a `Host`/`:authority` value: the port and a trailing dot removed.
pub fn strip_port(authority: &str) -> &str {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_have_four_aliases() {
        assert_eq!(aliases("reviews", "default").len(), 4);
        assert!(aliases("reviews", "default").contains(&"reviews.default.svc".to_owned()));
        assert_eq!(
            aliases("api.example.com", "default"),
            vec!["api.example.com"]
        );
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("reviews:9080"), "reviews");
        assert_eq!(strip_port("reviews"), "reviews");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("example.com."), "example.com");
    }
}
