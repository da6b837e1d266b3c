//! A rollout's managed routes in the fleet, on loopback: `augur controller` decides the
//! `setHeaderRoute` and `setMirrorRoute` steps and pushes their names; a sidecar following it
//! applies them with its own policy file's matches, as a single proxy would, and drops them
//! when the controller's rollout ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_tests::augur::{Controller, Proxy};
use augur_tests::http;
use augur_tests::policy::{
    canary_policy, primary_route, service, virtual_service, write, MANAGED_ROUTE_STEPS,
};
use augur_tests::upstream::Upstream;
use augur_tests::{assert_share_near, wait_for};

/// Requests per batch: at 20% the 4σ band is 80 ± 32.
const N: usize = 400;

fn policy(dir: &Path, v1: &Upstream, v2: &Upstream) -> PathBuf {
    write(
        dir,
        &[
            &virtual_service("model", &primary_route("model")),
            &service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]),
            &canary_policy("model", MANAGED_ROUTE_STEPS),
        ],
    )
}

/// Sends `N` requests through `p` with ids `{tag}-{i}` (and `x-beta: true` when `beta`);
/// returns how many the canary answered.
fn batch(p: &Proxy, tag: &str, beta: bool) -> usize {
    let extra = if beta { "x-beta: true\r\n" } else { "" };
    (0..N)
        .filter(|i| {
            let raw = format!(
                "POST /predict HTTP/1.1\r\nHost: model\r\nx-request-id: {tag}-{i}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let resp = http::request(p.listen, &raw).expect("request");
            assert_eq!(resp.status, 200, "{}", resp.body);
            resp.body.contains("\"model_version\":\"v2\"")
        })
        .count()
}

/// Waits until the controller publishes a state whose rollout satisfies `check`, then until
/// the sidecar has applied that state (or a later one); returns the rollout as published.
fn applied(
    controller: &Controller,
    sidecar: &Proxy,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let (version, rollout) = wait_for(what, Duration::from_secs(10), || {
        let state: serde_json::Value =
            serde_json::from_str(&controller.get("/v1/fleet/state").body).ok()?;
        let rollout = state["rollouts"][0].clone();
        check(&rollout).then(|| (state["version"].as_f64().unwrap_or(f64::MAX), rollout))
    });
    wait_for(
        &format!("the sidecar to apply state {version} ({what})"),
        Duration::from_secs(10),
        || (sidecar.metric("augur_controller_state_version") >= version).then_some(()),
    );
    rollout
}

#[test]
fn a_following_sidecar_applies_the_controllers_header_and_mirror_routes() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = policy(dir.path(), &v1, &v2);
    let state = tempfile::tempdir().expect("state dir");
    let any_port = "127.0.0.1:0".parse().expect("address");
    let controller = Controller::start(&[&file], state.path(), any_port, &[], None);
    let sidecar = Proxy::start_with_args(
        &[&file],
        &[
            "--controller",
            &controller.listen.to_string(),
            "--node",
            "pod-0",
        ],
    );

    // Step 2 (pause at 20%): no header route yet, x-beta requests go by the weight.
    applied(&controller, &sidecar, "weight 20%", |r| {
        r["canary_weight"] == 20 && r.get("header_routes").is_none()
    });
    assert_share_near(batch(&sidecar, "before", true), N, 0.2);

    // The controller decides the header route; the sidecar applies it with its own matches.
    controller.rollout_command("promote", "model");
    let r = applied(&controller, &sidecar, "the header route", |r| {
        r["header_routes"] == serde_json::json!(["beta"])
    });
    assert_eq!(r["canary_weight"], 20, "the weight is unchanged");
    let counted = sidecar.metric("augur_requests_total{route=\"primary\",arm=\"canary\"}");
    assert_eq!(
        batch(&sidecar, "beta", true),
        N,
        "every x-beta request to the canary"
    );
    assert_eq!(
        sidecar.metric("augur_requests_total{route=\"primary\",arm=\"canary\"}") - counted,
        N as f64,
        "counted on arm canary"
    );
    assert_share_near(batch(&sidecar, "plain", false), N, 0.2);

    // The mirror route: about half of the requests are also copied to the canary.
    controller.rollout_command("promote", "model");
    applied(&controller, &sidecar, "the mirror route", |r| {
        r["mirror_routes"] == serde_json::json!([{"name": "copy", "percent": 50}])
    });
    let primary = batch(&sidecar, "mirrored", false);
    assert_share_near(primary, N, 0.2);
    let lower = (N as f64 * 0.5 - 4.0 * (N as f64 * 0.25).sqrt()) as usize;
    let received = wait_for("the mirror copies", Duration::from_secs(20), || {
        let ids: Vec<String> = v2
            .received()
            .iter()
            .filter_map(|r| r.header("x-request-id").map(str::to_owned))
            .filter(|id| id.starts_with("mirrored-"))
            .collect();
        (ids.len() - primary >= lower).then_some(ids)
    });
    let distinct: BTreeSet<&String> = received.iter().collect();
    assert!(
        received.len() - distinct.len() <= primary,
        "copied once at most"
    );
    assert_share_near(received.len() - primary, N, 0.5);

    // An abort on the controller takes both routes off the sidecar: x-beta requests go to
    // stable with the rest.
    controller.rollout_command("abort", "model");
    applied(&controller, &sidecar, "the abort", |r| {
        r["canary_weight"] == 0
            && r.get("header_routes").is_none()
            && r.get("mirror_routes").is_none()
    });
    assert_eq!(
        batch(&sidecar, "after", true),
        0,
        "no header route after the abort"
    );
}
