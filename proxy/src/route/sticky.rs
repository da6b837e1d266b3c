//! Sticky routing: DestinationRule `loadBalancer.consistentHash` keys a request by header,
//! cookie, query parameter or client IP, and the hash replaces the random roll, so one user
//! stays on one version (and one endpoint) for as long as the weights stay put. As weights move
//! toward the canary, users only ever move from stable to canary, never back.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use augur_policies::ConsistentHash;

/// What the hash key is read from.
pub struct KeySource<'a> {
    /// Looks a header up by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
}

/// The request's hash under `policy`; `None` when the key is absent (the request is then
/// routed at random, as Envoy does).
pub fn hash(policy: &ConsistentHash, src: &KeySource<'_>) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match policy {
        ConsistentHash::HttpHeaderName(name) => {
            (src.header)(&name.to_ascii_lowercase())?.hash(&mut h);
        }
        ConsistentHash::HttpCookie { name, .. } => {
            let cookies = (src.header)("cookie")?;
            let value = cookies.split(';').find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })?;
            value.hash(&mut h);
        }
        ConsistentHash::HttpQueryParameterName(name) => {
            let value = src.query?.split('&').find_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k == name).then_some(v)
            })?;
            value.hash(&mut h);
        }
        ConsistentHash::UseSourceIp => src.client_ip?.hash(&mut h),
    }
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(
        header: &'a dyn Fn(&str) -> Option<&'a str>,
        query: Option<&'a str>,
    ) -> KeySource<'a> {
        KeySource {
            header,
            query,
            client_ip: Some("10.0.0.7".parse().unwrap()),
        }
    }

    #[test]
    fn keys_from_header_cookie_query_and_ip() {
        let headers = |k: &str| match k {
            "x-user" => Some("alice"),
            "cookie" => Some("a=1; session=abc; b=2"),
            _ => None,
        };
        let s = src(&headers, Some("x=1&user=bob"));
        let by_header = hash(&ConsistentHash::HttpHeaderName("X-User".into()), &s);
        assert!(by_header.is_some());
        assert_eq!(
            by_header,
            hash(&ConsistentHash::HttpHeaderName("x-user".into()), &s)
        );
        let cookie = ConsistentHash::HttpCookie {
            name: "session".into(),
            path: None,
            ttl: None,
        };
        assert!(hash(&cookie, &s).is_some());
        let missing = ConsistentHash::HttpCookie {
            name: "nope".into(),
            path: None,
            ttl: None,
        };
        assert_eq!(hash(&missing, &s), None);
        assert!(hash(&ConsistentHash::HttpQueryParameterName("user".into()), &s).is_some());
        assert!(hash(&ConsistentHash::UseSourceIp, &s).is_some());
        let none = |_: &str| None;
        assert_eq!(
            hash(
                &ConsistentHash::HttpHeaderName("x-user".into()),
                &src(&none, None)
            ),
            None
        );
    }
}
