//! A rollout's managed routes (Argo's `setHeaderRoute` and `setMirrorRoute`) applied by a
//! single `augur proxy`: from their step on, requests a header route matches go to the canary
//! whatever the weight, and a mirror route copies its share of the requests to the canary
//! without touching the answers; both are gone when the rollout ends.

use std::collections::BTreeSet;
use std::time::Duration;

use augur_tests::augur::{run, Proxy};
use augur_tests::http;
use augur_tests::policy::{
    canary_policy, primary_route, service, virtual_service, write, MANAGED_ROUTE_STEPS,
};
use augur_tests::upstream::Upstream;
use augur_tests::{assert_share_near, wait_for};

/// Requests per batch: at 20% the 4σ band is 80 ± 32, so 0% or 100% is ruled out.
const N: usize = 400;

struct Running {
    proxy: Proxy,
    v1: Upstream,
    v2: Upstream,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        &[
            &virtual_service("model", &primary_route("model")),
            &service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]),
            &canary_policy("model", MANAGED_ROUTE_STEPS),
        ],
    );
    let proxy = Proxy::start(&[&file]);
    Running {
        proxy,
        v1,
        v2,
        _dir: dir,
    }
}

impl Running {
    /// Waits for the rollout to stand at `step` (0-based).
    fn at_step(&self, step: usize) {
        self.metric_is("augur_rollout_step{policy=\"default/model\"}", step as f64);
    }

    /// Waits for the series `selector` selects to sum to exactly `value`.
    fn metric_is(&self, selector: &str, value: f64) {
        wait_for(selector, Duration::from_secs(10), || {
            (self.proxy.metric(selector) == value).then_some(())
        });
    }

    fn command(&self, args: &[&str]) {
        let admin = self.proxy.admin.to_string();
        let mut all = vec!["rollout", "--admin", admin.as_str()];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    /// Sends `N` requests with ids `{tag}-{i}` (with `x-beta: true` when `beta`); returns the
    /// ids the canary answered. Every answer is a 200 from stable or canary.
    fn batch(&self, tag: &str, beta: bool) -> BTreeSet<String> {
        let mut canary = BTreeSet::new();
        for i in 0..N {
            let id = format!("{tag}-{i}");
            let extra = if beta { "x-beta: true\r\n" } else { "" };
            let raw = format!(
                "POST /predict HTTP/1.1\r\nHost: model\r\nx-request-id: {id}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let resp = http::request(self.proxy.listen, &raw).expect("request");
            assert_eq!(resp.status, 200, "{}", resp.body);
            if resp.body.contains("\"model_version\":\"v2\"") {
                canary.insert(id);
            } else {
                assert!(
                    resp.body.contains("\"model_version\":\"v1\""),
                    "{}",
                    resp.body
                );
            }
        }
        canary
    }

    /// The ids of `tag`'s batch that the canary received, with how often each.
    fn canary_received(&self, tag: &str) -> Vec<String> {
        let prefix = format!("{tag}-");
        self.v2
            .received()
            .iter()
            .filter_map(|r| r.header("x-request-id").map(str::to_owned))
            .filter(|id| id.starts_with(&prefix))
            .collect()
    }

    fn canary_requests(&self) -> f64 {
        self.proxy
            .metric("augur_requests_total{route=\"primary\",arm=\"canary\"}")
    }
}

/// Steps 1–6 of [`MANAGED_ROUTE_STEPS`], then `end` (`promote --full` or `abort`): checks what each step
/// does to `x-beta` requests and to the others.
fn run_through(end: &str) {
    let r = start();
    r.at_step(1);
    // Before the header route: x-beta requests go by the weight, 20%.
    let before = r.batch("before", true);
    assert_share_near(before.len(), N, 0.2);

    r.command(&["promote", "model"]);
    r.at_step(3);
    // The header route: every x-beta request goes to the canary, counted as canary traffic.
    let counted = r.canary_requests();
    let beta = r.batch("beta", true);
    assert_eq!(beta.len(), N, "every x-beta request went to the canary");
    assert_eq!(
        r.canary_requests() - counted,
        N as f64,
        "and counted on arm canary"
    );
    // The others still go by the weight.
    let plain = r.batch("plain", false);
    assert_share_near(plain.len(), N, 0.2);
    // A header route is not a mirror: nothing was copied.
    assert_eq!(r.canary_received("plain").len(), plain.len());

    r.command(&["promote", "model"]);
    r.at_step(5);
    // The mirror route: about half of the requests are also copied to the canary; the
    // answers are still stable's or canary's by the weight (checked in `batch`).
    let v1_before = r.v1.served();
    let primary = r.batch("mirrored", false);
    assert_share_near(primary.len(), N, 0.2);
    assert_eq!(
        r.v1.served() - v1_before,
        N - primary.len(),
        "stable saw each of its requests once"
    );
    let lower = (N as f64 * 0.5 - 4.0 * (N as f64 * 0.25).sqrt()) as usize;
    let copies = wait_for("the mirror copies", Duration::from_secs(20), || {
        let received = r.canary_received("mirrored");
        let copies = received.len() - primary.len();
        (copies >= lower).then_some(received)
    });
    let distinct: BTreeSet<&String> = copies.iter().collect();
    let copied = copies.len() - primary.len();
    assert!(
        copies.len() - distinct.len() <= primary.len(),
        "a request is copied once at most"
    );
    assert_share_near(copied, N, 0.5);
    // The header route holds through the mirror step.
    assert_eq!(r.batch("beta-again", true).len(), N);

    r.command(&[end, "model"]);
    let (weight, beta_share) = if end == "abort" { (0, 0) } else { (100, N) };
    r.metric_is(
        "augur_rollout_weight{policy=\"default/model\",arm=\"canary\"}",
        f64::from(weight),
    );
    // After the end, x-beta requests go by the final weight (all stable after an abort: the
    // header route is gone), and nothing is mirrored: the canary gets each of its requests
    // once, and none of stable's.
    let after = r.batch("after", true);
    assert_eq!(after.len(), beta_share, "x-beta at weight {weight}%");
    let plain = r.batch("after-plain", false);
    assert_eq!(plain.len(), beta_share);
    let received = r.canary_received("after-plain");
    assert_eq!(
        received.len(),
        plain.len(),
        "no copies after {end}: {} received for {} answered",
        received.len(),
        plain.len()
    );
}

#[test]
fn header_and_mirror_routes_apply_from_their_step_until_promoted_to_the_end() {
    run_through("promote");
}

#[test]
fn header_and_mirror_routes_are_removed_by_an_abort() {
    run_through("abort");
}
