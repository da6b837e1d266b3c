//! What the proxy loads beyond the policy files (API keys from files and environment variables,
//! shadow models with their metadata JSON), checked the way the proxy loads them, each problem
//! placed at the policy field that names it (`file:line:column: spec.shadow.model: ...`).
//!
//! `augur policy check` runs these so that it accepts only what the proxy will load; the proxy's
//! reload reports its own failures through [`shadow_not_loaded`] and [`api_keys`] too.

use augur_inference::ShadowModel;
use augur_policies::{Diagnostic, DocumentRef, KeysFrom, Loaded, Severity};

use crate::protect::keys::KeySet;

/// The field of an ApiProtection that names its key source.
fn keys_path(from: &KeysFrom) -> &'static str {
    match from {
        KeysFrom::File(_) => "spec.apiKey.keysFrom.file",
        KeysFrom::Env(_) => "spec.apiKey.keysFrom.env",
    }
}

/// Every ApiProtection's keys: the file or environment variable must hold at least one key. A
/// failure rejects the policy set, at load as at reload.
pub fn api_keys(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, p) in loaded.set.api_protections.iter().enumerate() {
        let Some(key) = &p.api_key else { continue };
        if let Err(e) = KeySet::load(&key.keys_from) {
            out.push(loaded.diagnostic(
                DocumentRef::ApiProtection(i),
                keys_path(&key.keys_from),
                Severity::Error,
                e.to_string(),
            ));
        }
    }
    out
}

/// Every CanaryPolicy's shadow model: its metadata JSON (`model.onnx` → `model.json`), the model
/// and its input shape against the metadata and the policy's `preprocessing`. The proxy serves
/// without a shadow model that does not load, so this is the only place such a mistake stops
/// anything: `policy check` reports it as an error.
pub fn shadow_models(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, p) in loaded.set.canary_policies.iter().enumerate() {
        let Some(shadow) = &p.shadow else { continue };
        if let Err(e) = ShadowModel::check_policy(shadow) {
            out.push(loaded.diagnostic(
                DocumentRef::CanaryPolicy(i),
                "spec.shadow.model",
                Severity::Error,
                format!("shadow model {}: {e}", shadow.model),
            ));
        }
    }
    out
}

/// The line a reload logs (and `/config_dump` shows) when CanaryPolicy `index`'s shadow model
/// does not load: a warning at `spec.shadow.model`, since the routes serve without it.
pub fn shadow_not_loaded(loaded: &Loaded, index: usize, model: &str, error: &str) -> Diagnostic {
    loaded.diagnostic(
        DocumentRef::CanaryPolicy(index),
        "spec.shadow.model",
        Severity::Warning,
        format!("shadow model {model} not loaded; the routes serve without it: {error}"),
    )
}
