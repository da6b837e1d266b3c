//! The ApiProtection checks at request time: API-key authentication (Envoy's `api_key_auth`)
//! and per-client token-bucket rate limiting (Envoy's `local_ratelimit`), with Envoy's replies:
//!
//! - a missing or unknown key: `401 Client authentication failed.`, no response flag (Envoy's
//!   `api_key_auth` sets none; its response code details say `missing_api_key`);
//! - an empty bucket: `429 local_rate_limited`, `x-envoy-ratelimited: true`, flag `RL`.
//!
//! When the bucket is keyed by the API key, the key is checked first (an unknown key takes no
//! token from anyone); otherwise the bucket is checked first, so that guessing keys from one
//! address is rate limited too.
//!
//! Keys are held as SHA-256 hashes ([`keys`]), clients as keyed hashes ([`limiter`]); neither
//! is ever logged.

pub mod keys;
pub mod limiter;

use crate::response_flag::ResponseFlag;
use std::net::IpAddr;
use std::sync::Arc;

use augur_policies::{ApiProtection, PolicySet, RateLimit, RateLimitKey};
use pingora::http::RequestHeader;

use crate::local_reply::LocalReply;
pub use keys::{KeySet, KeysError};
pub use limiter::Limiter;

/// A missing or unknown API key, as Envoy's `api_key_auth` answers it.
pub const UNAUTHORIZED: LocalReply = LocalReply {
    status: 401,
    flag: ResponseFlag::None,
    body: "Client authentication failed.",
};

/// An empty token bucket, as Envoy's `local_ratelimit` answers it.
pub const RATE_LIMITED: LocalReply = LocalReply {
    status: 429,
    flag: ResponseFlag::RateLimited,
    body: "local_rate_limited",
};

/// An ApiProtection whose keys could not be read: the policy set is rejected.
#[derive(Debug, thiserror::Error)]
#[error("ApiProtection {protection}: spec.apiKey.keysFrom: {source}")]
pub struct ProtectError {
    /// `namespace/name`.
    pub protection: String,
    /// Why.
    #[source]
    pub source: KeysError,
}

/// One compiled ApiProtection.
#[derive(Debug)]
pub struct Protection {
    /// `namespace/name`: the key its buckets are kept under.
    pub name: Arc<str>,
    namespace: String,
    virtual_service: String,
    routes: Vec<String>,
    api_key: Option<ApiKeyCheck>,
    rate_limit: Option<RateLimit>,
    /// The largest request body accepted on the protected routes (`maxRequestBodyBytes`).
    pub max_request_body_bytes: Option<u64>,
}

#[derive(Debug)]
struct ApiKeyCheck {
    header: String,
    keys: KeySet,
    hide: bool,
}

/// Compiles every ApiProtection of the set, reading their keys.
pub fn compile(set: &PolicySet) -> Result<Vec<Arc<Protection>>, ProtectError> {
    set.api_protections.iter().map(compile_one).collect()
}

fn compile_one(p: &ApiProtection) -> Result<Arc<Protection>, ProtectError> {
    let name = format!("{}/{}", p.metadata.namespace, p.metadata.name);
    let api_key = match &p.api_key {
        Some(k) => Some(ApiKeyCheck {
            header: k.header.clone(),
            keys: KeySet::load(&k.keys_from).map_err(|source| ProtectError {
                protection: name.clone(),
                source,
            })?,
            hide: k.hide_credentials,
        }),
        None => None,
    };
    Ok(Arc::new(Protection {
        name: Arc::from(name),
        namespace: p.metadata.namespace.clone(),
        virtual_service: p.virtual_service.clone(),
        routes: p.routes.clone(),
        api_key,
        rate_limit: p.rate_limit.clone(),
        max_request_body_bytes: p.max_request_body_bytes,
    }))
}

/// The protection of a VirtualService's route (`route` is its `name`, if it has one).
pub fn for_route(
    protections: &[Arc<Protection>],
    namespace: &str,
    virtual_service: &str,
    route: Option<&str>,
) -> Option<Arc<Protection>> {
    protections
        .iter()
        .find(|p| {
            p.namespace == namespace
                && p.virtual_service == virtual_service
                && (p.routes.is_empty() || route.is_some_and(|r| p.routes.iter().any(|n| n == r)))
        })
        .cloned()
}

impl Protection {
    /// Checks a request; `Some(reply)` denies it. On success the key header is removed when
    /// `hideCredentials` asks for it.
    pub fn check(
        &self,
        limiter: &Limiter,
        req: &mut RequestHeader,
        client: Option<IpAddr>,
    ) -> Option<LocalReply> {
        let by_key = self
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.key == RateLimitKey::ApiKey);
        if by_key {
            let key = match self.authenticate(req) {
                Ok(key) => key,
                Err(reply) => return Some(reply),
            };
            if !self.take(limiter, req, client, key.as_deref()) {
                return Some(RATE_LIMITED);
            }
        } else {
            if !self.take(limiter, req, client, None) {
                return Some(RATE_LIMITED);
            }
            if let Err(reply) = self.authenticate(req) {
                return Some(reply);
            }
        }
        if let Some(k) = self.api_key.as_ref().filter(|k| k.hide) {
            req.remove_header(k.header.as_str());
        }
        None
    }

    /// The presented key when it is accepted (`None` without `apiKey`).
    fn authenticate(&self, req: &RequestHeader) -> Result<Option<Vec<u8>>, LocalReply> {
        let Some(check) = &self.api_key else {
            return Ok(None);
        };
        let presented = req
            .headers
            .get(check.header.as_str())
            .map(|v| v.as_bytes())
            .map(|v| v.strip_prefix(b"Bearer ").unwrap_or(v))
            .filter(|v| !v.is_empty());
        match presented {
            Some(key) if check.keys.accepts(key) => Ok(Some(key.to_vec())),
            _ => Err(UNAUTHORIZED),
        }
    }

    fn take(
        &self,
        limiter: &Limiter,
        req: &RequestHeader,
        client: Option<IpAddr>,
        api_key: Option<&[u8]>,
    ) -> bool {
        let Some(limit) = &self.rate_limit else {
            return true;
        };
        // The address's 16 bytes (IPv4 mapped into IPv6), not its text: no allocation per request.
        let ip;
        let who: &[u8] = match &limit.key {
            RateLimitKey::SourceIp => {
                ip = match client {
                    Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
                    Some(IpAddr::V6(v6)) => v6.octets(),
                    None => [0; 16],
                };
                &ip
            }
            RateLimitKey::ApiKey => api_key.unwrap_or_default(),
            // Requests without the header share one bucket rather than escape the limit.
            RateLimitKey::Header(name) => req
                .headers
                .get(name.as_str())
                .map(|v| v.as_bytes())
                .unwrap_or_default(),
        };
        limiter.take(&self.name, who, limit, crate::clock::now())
    }
}
