//! JSON Schema of the CanaryPolicy document, generated with `schemars` from
//! the raw serde types (doc comments become descriptions; unknown keys are
//! flagged with `additionalProperties: false`). The committed copy lives at
//! `policies/schema/canarypolicy.schema.json`; a test keeps it fresh.

use crate::canary::raw::RawCanarySpec;
use crate::load::RawDocument;
use crate::protection::raw::RawProtectionSpec;

/// The JSON Schema for an `augur.dev/v1alpha1` CanaryPolicy document.
pub fn canary_policy_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawDocument<RawCanarySpec>);
    schema.insert("title".into(), "CanaryPolicy (augur.dev/v1alpha1)".into());
    schema.insert(
        "description".into(),
        "augur CanaryPolicy: drives the weights of VirtualService routes between a stable and a canary model, with analysis and rollback triggers; or, shadow-only (shadow without canary and steps), scores a share of stable's requests in a shadow model and changes no weight.".into(),
    );
    schema.to_value()
}

/// The JSON Schema for an `augur.dev/v1alpha1` ApiProtection document.
pub fn api_protection_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawDocument<RawProtectionSpec>);
    schema.insert("title".into(), "ApiProtection (augur.dev/v1alpha1)".into());
    schema.insert(
        "description".into(),
        "augur ApiProtection: API-key authentication and per-client token-bucket rate limiting for the HTTP routes of a VirtualService (Envoy's api_key_auth and local_ratelimit).".into(),
    );
    schema.to_value()
}
