//! A following sidecar's managed routes: it applies the header routes the controller names
//! with its own policy's matches and the mirror routes as pushed, replaces them with each
//! state, refuses a mirror percent over 100, and holds them for another policy version.

mod common;

use std::sync::Arc;

use augur_model::fleet::{FleetState, MirrorRouting, RolloutRouting, FLEET_PROTOCOL};
use augur_proxy::follow::Follower;
use augur_proxy::metrics::Metrics;
use augur_proxy::policy_store::PolicyStore;
use augur_proxy::weights::RolloutWeights;

fn policy() -> String {
    common::policy_with_steps(
        "  - setWeight: 20\n  - setHeaderRoute:\n      name: beta\n      match: [{headerName: x-beta, headerValue: {exact: 'true'}}]\n  - setMirrorRoute: {name: copy, percentage: 100}\n  - pause: {}\n  - setWeight: 100\n",
    )
}

fn state(version: u64, hash: &str, canary: u8, headers: &[&str], mirror: Option<u8>) -> FleetState {
    FleetState {
        protocol: FLEET_PROTOCOL,
        version,
        controller: "c".into(),
        decided_at_ms: 0,
        published_at_ms: 0,
        rollouts: vec![RolloutRouting {
            policy: "default/m".into(),
            policy_hash: hash.into(),
            stable: "m/v1".into(),
            canary: "m/v2".into(),
            stable_weight: 100 - canary,
            canary_weight: canary,
            phase: "paused".into(),
            step: Some(4),
            changed_at_ms: 0,
            header_routes: headers.iter().map(|h| (*h).to_owned()).collect(),
            mirror_routes: mirror
                .map(|percent| MirrorRouting {
                    name: "copy".into(),
                    percent,
                })
                .into_iter()
                .collect(),
        }],
    }
}

#[test]
fn a_sidecar_applies_the_pushed_managed_routes_with_its_own_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy()).expect("policy");
    let metrics =
        Arc::new(Metrics::new(augur_proxy::identity::Workload::unknown()).expect("metrics"));
    let store = Arc::new(PolicyStore::open(vec![file], Arc::clone(&metrics)).expect("store"));
    let snapshot = store.snapshot();
    let set = &snapshot.loaded.set;
    let hash = augur_policies::fingerprint::rollout_fingerprint(set, &set.canary_policies[0]);
    let weights = Arc::new(RolloutWeights::default());
    // Never connected: `apply` is what each push goes through.
    let follower = Follower::new(
        "127.0.0.1:1".into(),
        None,
        "pod-1".into(),
        Arc::clone(&store),
        Arc::clone(&weights),
        metrics.follow.clone(),
    );
    let beta = |h: &str| (h == "x-beta").then_some("true");

    follower
        .apply(&state(1, &hash, 20, &["beta"], Some(100)))
        .expect("applied");
    let routes = weights.routes("default/m").expect("routes in force");
    assert_eq!(routes.header_route(&beta), Some("beta"), "the file's match");
    assert!(routes.mirror_roll(), "100% mirrored");

    // A mirror percent over 100 is a bad push: the last good routes stay.
    assert!(follower
        .apply(&state(2, &hash, 20, &[], Some(101)))
        .is_err());
    assert_eq!(
        weights
            .routes("default/m")
            .and_then(|r| r.header_route(&beta).map(str::to_owned)),
        Some("beta".to_owned())
    );

    // Another policy version: held, routes included.
    follower
        .apply(&state(3, "another", 0, &[], None))
        .expect("applied with a mismatch");
    assert!(weights.routes("default/m").is_some());

    // canaryOnly as the controller pushes it: weight 0, no header route, the mirror kept.
    follower
        .apply(&state(4, &hash, 0, &[], Some(100)))
        .expect("applied");
    let routes = weights.routes("default/m").expect("the mirror stays");
    assert_eq!(routes.header_route(&beta), None);
    assert!(routes.mirror_roll());

    // The rollout ended: no managed route.
    follower
        .apply(&state(5, &hash, 0, &[], None))
        .expect("applied");
    assert!(weights.routes("default/m").is_none());
}
