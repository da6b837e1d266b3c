//! `augur.dev/v1alpha1` ApiProtection: API-key authentication and per-client rate limiting for
//! the HTTP routes of a VirtualService, as Envoy's `api_key_auth` and `local_ratelimit` filters
//! do. Istio's documents cannot gain fields, so the protections are augur's own kind that points
//! at a VirtualService's routes by name, as a CanaryPolicy does.
//!
//! The keys themselves never appear in the policy: `keysFrom` names a file or an environment
//! variable that the proxy reads when it (re)loads the set.

use std::time::Duration;

use serde::Serialize;

use crate::context::Ctx;
use crate::istio::common::ObjectMeta;
use crate::yaml::join;

pub(crate) mod raw;

use raw::RawProtectionSpec;

/// The header Envoy's examples and most API gateways read the key from.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// A validated ApiProtection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiProtection {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The protected VirtualService (same namespace).
    pub virtual_service: String,
    /// Its protected routes; empty = every route.
    pub routes: Vec<String>,
    /// API-key authentication.
    pub api_key: Option<ApiKey>,
    /// Rate limiting.
    pub rate_limit: Option<RateLimit>,
    /// The largest request body accepted on the protected routes, in bytes.
    pub max_request_body_bytes: Option<u64>,
}

/// `apiKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Lowercase header name.
    pub header: String,
    /// Where the keys are read.
    pub keys_from: KeysFrom,
    /// Remove the header before forwarding.
    pub hide_credentials: bool,
}

/// Where the accepted keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeysFrom {
    /// A file, one key per line.
    File(String),
    /// An environment variable, comma-separated keys.
    Env(String),
}

/// `rateLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Which client a bucket belongs to.
    pub key: RateLimitKey,
    /// Bucket size.
    pub max_tokens: u32,
    /// Tokens added per fill.
    pub tokens_per_fill: u32,
    /// Time between fills.
    pub fill_interval: Duration,
}

/// What identifies a client for rate limiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    /// The peer's IP address.
    SourceIp,
    /// The presented API key.
    ApiKey,
    /// A request header's value (lowercase name).
    Header(String),
}

impl RawProtectionSpec {
    pub(crate) fn validate(&self, metadata: ObjectMeta, cx: &mut Ctx<'_>) -> ApiProtection {
        let vp = "spec.virtualService";
        let (virtual_service, routes) = match &self.virtual_service {
            None => {
                cx.error(vp, "is required");
                (String::new(), Vec::new())
            }
            Some(v) => {
                let name = v.name.clone().unwrap_or_default();
                if name.is_empty() {
                    cx.error(&join(vp, "name"), "is required");
                }
                (name, v.routes.clone().unwrap_or_default())
            }
        };
        let api_key = self.api_key.as_ref().and_then(|k| {
            let p = "spec.apiKey";
            let header = k
                .header
                .clone()
                .unwrap_or_else(|| DEFAULT_API_KEY_HEADER.to_owned())
                .to_ascii_lowercase();
            if http_token(&header).is_none() {
                cx.error(
                    &join(p, "header"),
                    format!("{header:?} is not a valid header name"),
                );
            }
            let kp = join(p, "keysFrom");
            let keys_from = match k.keys_from.as_ref().map(|f| (&f.file, &f.env)) {
                Some((Some(file), None)) if !file.is_empty() => Some(KeysFrom::File(file.clone())),
                Some((None, Some(env))) if !env.is_empty() => Some(KeysFrom::Env(env.clone())),
                None => {
                    cx.error(
                        &kp,
                        "is required (a file or an environment variable with the keys)",
                    );
                    None
                }
                _ => {
                    cx.error(&kp, "exactly one of file or env is required, and not empty");
                    None
                }
            };
            keys_from.map(|keys_from| ApiKey {
                header,
                keys_from,
                hide_credentials: k.hide_credentials.unwrap_or(false),
            })
        });
        let rate_limit = self
            .rate_limit
            .as_ref()
            .and_then(|r| rate_limit(r, self.api_key.is_some(), cx));
        let max_request_body_bytes = self.max_request_body_bytes.and_then(|n| {
            let parsed = u64::try_from(n).ok().filter(|n| *n >= 1);
            if parsed.is_none() {
                cx.error(
                    "spec.maxRequestBodyBytes",
                    format!("must be a positive number of bytes, got {n}"),
                );
            }
            parsed
        });
        if self.api_key.is_none()
            && self.rate_limit.is_none()
            && self.max_request_body_bytes.is_none()
        {
            cx.error(
                "spec",
                "at least one of apiKey, rateLimit or maxRequestBodyBytes is required",
            );
        }
        ApiProtection {
            metadata,
            virtual_service,
            routes,
            api_key,
            rate_limit,
            max_request_body_bytes,
        }
    }
}

fn rate_limit(r: &raw::RawRateLimit, has_api_key: bool, cx: &mut Ctx<'_>) -> Option<RateLimit> {
    let p = "spec.rateLimit";
    let key = match r.key.as_deref() {
        None | Some("sourceIP") => Some(RateLimitKey::SourceIp),
        Some("apiKey") if has_api_key => Some(RateLimitKey::ApiKey),
        Some("apiKey") => {
            cx.error(&join(p, "key"), "key apiKey needs spec.apiKey");
            None
        }
        Some(other) => match other.strip_prefix("header:").and_then(http_token) {
            Some(h) => Some(RateLimitKey::Header(h.to_ascii_lowercase())),
            None => {
                cx.error(
                    &join(p, "key"),
                    format!("must be sourceIP, apiKey or header:<name>, got {other:?}"),
                );
                None
            }
        },
    };
    let bp = join(p, "tokenBucket");
    let Some(bucket) = &r.token_bucket else {
        cx.error(&bp, "is required (maxTokens, tokensPerFill, fillInterval)");
        return None;
    };
    let count = |cx: &mut Ctx<'_>, field: &str, v: Option<i64>| -> Option<u32> {
        let v = v?;
        match u32::try_from(v) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                cx.error(
                    &join(&bp, field),
                    format!("must be in 1..=4294967295, got {v}"),
                );
                None
            }
        }
    };
    let max_tokens = count(cx, "maxTokens", bucket.max_tokens);
    if bucket.max_tokens.is_none() {
        cx.error(&join(&bp, "maxTokens"), "is required");
    }
    let tokens_per_fill = count(cx, "tokensPerFill", bucket.tokens_per_fill).or(max_tokens);
    let fp = join(&bp, "fillInterval");
    let fill_interval = match cx.duration(&fp, &bucket.fill_interval) {
        Some(d) if d >= Duration::from_millis(1) => Some(d),
        Some(d) => {
            cx.error(&fp, format!("must be at least 1ms, got {d:?}"));
            None
        }
        None => {
            if bucket.fill_interval.is_none() {
                cx.error(&fp, "is required");
            }
            None
        }
    };
    Some(RateLimit {
        key: key?,
        max_tokens: max_tokens?,
        tokens_per_fill: tokens_per_fill?,
        fill_interval: fill_interval?,
    })
}

/// `name` when it is a valid HTTP header name (RFC 9110 token).
fn http_token(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then_some(name)
}
