//! Raw serde shape of `augur.dev/v1alpha1` ApiProtection. The doc comments here become the
//! descriptions in `schema/apiprotection.schema.json`. Unknown fields are errors (collected
//! with `serde_ignored`, as for CanaryPolicy).

use schemars::JsonSchema;
use serde::Deserialize;

/// `spec` of an ApiProtection.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawProtectionSpec {
    /// The VirtualService (same namespace) whose HTTP routes are protected.
    pub(crate) virtual_service: Option<RawProtectedRoutes>,
    /// Require an API key (Envoy's `api_key_auth` filter): a missing or unknown key is answered `401 Client authentication failed.`
    pub(crate) api_key: Option<RawApiKey>,
    /// Token-bucket rate limit per client (Envoy's `local_ratelimit` filter): an empty bucket is answered `429 local_rate_limited` with flag RL.
    pub(crate) rate_limit: Option<RawRateLimit>,
    /// Largest request body accepted on these routes, in bytes (Envoy's per-route buffer `max_request_bytes`): a larger one is answered `413 Payload Too Large` before anything is forwarded when `Content-Length` says so, else as soon as the streamed body passes it. It can only lower the proxy-wide `--max-request-body-bytes`.
    pub(crate) max_request_body_bytes: Option<i64>,
}

/// `virtualService`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawProtectedRoutes {
    /// VirtualService `metadata.name`.
    pub(crate) name: Option<String>,
    /// Names of its HTTP routes (`http[].name`) to protect; absent = every route.
    pub(crate) routes: Option<Vec<String>>,
}

/// `apiKey`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    /// Request header that carries the key (default `x-api-key`); a `Bearer ` prefix is stripped, as Envoy does.
    pub(crate) header: Option<String>,
    /// Where the accepted keys are read (keys never appear in policy files).
    pub(crate) keys_from: Option<RawKeysFrom>,
    /// Remove the key header before forwarding (and mirroring), as Envoy's `forwarding.hide_credentials` (default false).
    pub(crate) hide_credentials: Option<bool>,
}

/// `apiKey.keysFrom`: exactly one of `file` or `env`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawKeysFrom {
    /// A file with one key per line (blank lines and lines starting with `#` are skipped), read at each (re)load.
    pub(crate) file: Option<String>,
    /// An environment variable holding comma-separated keys, read at each (re)load.
    pub(crate) env: Option<String>,
}

/// `rateLimit`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// Which client a bucket belongs to: `sourceIP` (default; the peer address), `apiKey` (needs `apiKey`), or `header:<name>` (requests without the header share one bucket).
    #[schemars(pattern(r"^(sourceIP|apiKey|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"))]
    pub(crate) key: Option<String>,
    /// The bucket, as Envoy's `token_bucket`.
    pub(crate) token_bucket: Option<RawTokenBucket>,
}

/// `rateLimit.tokenBucket` (Envoy's `token_bucket`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawTokenBucket {
    /// Bucket size: the burst a client may send (at least 1).
    pub(crate) max_tokens: Option<i64>,
    /// Tokens added at every `fillInterval` (default `maxTokens`).
    pub(crate) tokens_per_fill: Option<i64>,
    /// Time between fills (Go duration, at least 1ms), e.g. `60s`.
    pub(crate) fill_interval: Option<String>,
}
