//! `/config_dump`: the serving policy set, where it came from and the last rejected reload.

use serde_json::{json, Value};

use super::AdminState;
use crate::policy_store::unix_seconds;

/// Envoy wraps every section in `configs[]` with an `@type`; augur adds its own section.
pub(super) fn dump(s: &AdminState) -> Value {
    let snapshot = s.store.snapshot();
    let loaded = &snapshot.loaded;
    let failure = s.store.last_failure();
    json!({
        "configs": [{
            "@type": "type.augur.dev/augur.admin.v1alpha1.PolicyConfigDump",
            "version_info": loaded.hash,
            "last_updated_unix": unix_seconds(snapshot.loaded_at),
            "sources": loaded.sources,
            "warnings": loaded.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "last_rejected_reload": failure.as_deref(),
            "shadow_models": snapshot
                .shadows
                .iter()
                .map(|(k, h)| json!({"policy": k, "model": h.config.model}))
                .collect::<Vec<_>>(),
            "shadow_model_errors": snapshot.shadow_errors,
            "routes": augur_policies::explain::explain(&loaded.set),
        }]
    })
}
