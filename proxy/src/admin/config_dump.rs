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
            // Each loaded shadow model, its share of requests, and whether its policy is
            // shadow-only (no canary, no steps: it changes no weight).
            "shadow_models": snapshot
                .shadows
                .iter()
                .map(|(k, h)| {
                    let shadow_only = loaded
                        .set
                        .canary_policies
                        .iter()
                        .any(|p| p.is_shadow_only() && augur_policies::policy_key(p) == *k);
                    json!({
                        "policy": k,
                        "model": h.config.model,
                        "mirror_percentage": h.config.mirror_percentage.value(),
                        "shadow_only": shadow_only,
                    })
                })
                .collect::<Vec<_>>(),
            "shadow_model_errors": snapshot.shadow_errors,
            // Each route a CanaryPolicy drives: the stable/canary weights its file writes, and
            // the weights its rollout set, which requests follow (null: the file's apply).
            "driven_routes": augur_policies::driven::driven_routes(&loaded.set)
                .into_iter()
                .map(|d| {
                    let live = s.rollouts.weights().get(&d.policy);
                    json!({
                        "policy": d.policy,
                        "virtual_service": d.virtual_service,
                        "route": d.route,
                        "file_weights": {"stable": d.stable_weight, "canary": d.canary_weight},
                        "live_weights": live.map(|w| json!({"stable": w.stable, "canary": w.canary})),
                    })
                })
                .collect::<Vec<_>>(),
            "routes": augur_policies::explain::explain(&loaded.set),
        }]
    })
}
