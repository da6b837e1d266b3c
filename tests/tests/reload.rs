//! Hot reload under `augur proxy`: an invalid policy file leaves the old routing in place and
//! counts a failure; a valid one changes routing without a restart; SIGHUP reloads too.

use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::upstream::Upstream;
use augur_tests::{http, wait_for};

/// The canary layout the seeds use: VirtualService `pneumonia` with stable v1 and canary v2.
fn policy(v1: &Upstream, v2: &Upstream, w1: u32, w2: u32) -> String {
    augur_tests::policy::split("pneumonia", (v1.addr.port(), v2.addr.port()), (w1, w2))
}

/// Sends `n` requests and returns how many each version answered.
fn versions(proxy: &Proxy, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        let r = http::get(proxy.listen, "pneumonia", "/predict").expect("request through augur");
        assert_eq!(r.status, 200, "body: {}", r.body);
        if r.body.contains(r#""model_version":"v1""#) {
            counts.0 += 1;
        } else if r.body.contains(r#""model_version":"v2""#) {
            counts.1 += 1;
        } else {
            panic!("unexpected body {}", r.body);
        }
    }
    counts
}

#[test]
fn invalid_policy_keeps_old_routing_and_valid_policy_applies_without_restart() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pneumonia.yaml");
    std::fs::write(&file, policy(&v1, &v2, 100, 0)).unwrap();
    let mut proxy = Proxy::start(&[&file]);
    let pid = proxy.pid();
    let first_version = proxy.config_version();

    assert_eq!(versions(&proxy, 20), (20, 0));

    // Invalid: total weight 0 with two destinations.
    augur_tests::policy::write_atomically(&file, policy(&v1, &v2, 0, 0));
    wait_for(
        "the reload failure to be counted",
        Duration::from_secs(10),
        || (proxy.metric("augur_config_reload_failures_total") >= 1.0).then_some(()),
    );
    assert_eq!(proxy.metric("augur_config_last_reload_successful"), 0.0);
    assert_eq!(
        versions(&proxy, 20),
        (20, 0),
        "the last good policy keeps serving"
    );
    assert_eq!(proxy.config_version(), first_version);
    let dump = proxy.admin_get("/config_dump").body;
    assert!(
        dump.contains("pneumonia.yaml:") && dump.contains("weight"),
        "the config dump shows the rejected reload's errors: {dump}"
    );

    // Valid: all traffic to v2.
    augur_tests::policy::write_atomically(&file, policy(&v1, &v2, 0, 100));
    wait_for("routing to switch to v2", Duration::from_secs(10), || {
        (versions(&proxy, 1) == (0, 1)).then_some(())
    });
    assert_eq!(versions(&proxy, 20), (0, 20));
    assert_ne!(proxy.config_version(), first_version);
    assert_eq!(proxy.metric("augur_config_last_reload_successful"), 1.0);
    assert_eq!(proxy.metric("augur_config_reload_failures_total"), 1.0);
    assert!(proxy.is_running());
    assert_eq!(proxy.pid(), pid, "no restart");
}

#[test]
fn sighup_reloads_and_keeps_running() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pneumonia.yaml");
    std::fs::write(&file, policy(&v1, &v2, 100, 0)).unwrap();
    let mut proxy = Proxy::start(&[&file]);
    let before = proxy.metric("augur_config_reloads_total");
    proxy.signal("HUP");
    wait_for(
        "SIGHUP to trigger a reload",
        Duration::from_secs(10),
        || (proxy.metric("augur_config_reloads_total") > before).then_some(()),
    );
    assert!(proxy.is_running(), "SIGHUP must not terminate the proxy");
    assert_eq!(versions(&proxy, 5), (5, 0));
}

#[test]
fn invalid_policy_at_start_is_refused_with_every_error() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, policy(&v1, &v2, 0, 0)).unwrap();
    let out = augur_tests::augur::run(&["proxy", "--policy", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
}

#[test]
fn a_weight_change_mid_run_takes_effect_without_errors() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pneumonia.yaml");
    std::fs::write(&file, policy(&v1, &v2, 80, 20)).unwrap();
    let proxy = Proxy::start(&[&file]);
    let listen = proxy.listen;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    // Load on a keep-alive connection while the weights change underneath it.
    let load = std::thread::spawn(move || {
        let mut conn = http::Connection::open(listen).expect("connect");
        let mut statuses = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            statuses.push(conn.get("pneumonia", "/predict").expect("request").status);
        }
        statuses
    });
    wait_for("traffic at 80/20", Duration::from_secs(10), || {
        (v2.served() >= 50).then_some(())
    });
    augur_tests::policy::write_atomically(&file, policy(&v1, &v2, 0, 100));
    let mut last = v1.served();
    wait_for(
        "stable to stop getting traffic",
        Duration::from_secs(10),
        || {
            std::thread::sleep(Duration::from_millis(300));
            let now = v1.served();
            let quiet = now == last;
            last = now;
            quiet.then_some(())
        },
    );
    let after_switch = v2.served();
    wait_for(
        "more traffic after the switch",
        Duration::from_secs(10),
        || (v2.served() >= after_switch + 200).then_some(()),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().expect("load thread");
    assert!(statuses.len() > 300);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request failed during the change"
    );
}

/// Editing the written weights of a route a running rollout drives does not move traffic (the
/// rollout's weights keep applying): the reload says so, at the route's line, and
/// `/config_dump` shows the file's weights beside the live ones.
#[test]
fn editing_the_weights_of_a_driven_route_is_warned_about_and_both_splits_are_shown() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pneumonia.yaml");
    let canary = augur_tests::policy::canary_policy(
        "pneumonia",
        "  steps:\n  - setWeight: 5\n  - pause: {}\n  - setWeight: 100\n",
    );
    let with = |w1: u32, w2: u32| format!("{}\n---\n{canary}", policy(&v1, &v2, w1, w2));
    std::fs::write(&file, with(100, 0)).unwrap();
    let proxy = Proxy::start(&[&file]);
    let driven = |proxy: &Proxy| {
        let dump: serde_json::Value =
            serde_json::from_str(&proxy.admin_get("/config_dump").body).expect("JSON");
        dump["configs"][0]["driven_routes"][0].clone()
    };
    wait_for("the rollout to set 95/5", Duration::from_secs(10), || {
        (driven(&proxy)["live_weights"] == serde_json::json!({"stable": 95, "canary": 5}))
            .then_some(())
    });
    let version = proxy.config_version();
    augur_tests::policy::write_atomically(&file, with(50, 50));
    wait_for("the edit to be applied", Duration::from_secs(10), || {
        (proxy.config_version() != version).then_some(())
    });
    let d = driven(&proxy);
    assert_eq!(d["route"], "primary");
    assert_eq!(
        d["file_weights"],
        serde_json::json!({"stable": 50, "canary": 50})
    );
    assert_eq!(
        d["live_weights"],
        serde_json::json!({"stable": 95, "canary": 5})
    );
    // Live traffic really stays at the rollout's 95/5, not the file's 50/50: of 400 requests,
    // v2 gets 5% within 4σ (≈ 20 ± 17; 50/50 would give ≈ 200).
    let n = 400;
    let (_, on_v2) = versions(&proxy, n);
    let (expected, sigma) = (n as f64 * 0.05, (n as f64 * 0.05 * 0.95).sqrt());
    assert!(
        (on_v2 as f64 - expected).abs() <= 4.0 * sigma,
        "{on_v2} of {n} on v2 after the edit; the rollout's 5% is {expected} ± {}",
        4.0 * sigma
    );
    let dump: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/config_dump").body).expect("JSON");
    let line = with(50, 50)
        .lines()
        .position(|l| l.contains("- name: primary"))
        .map_or(0, |i| i + 2);
    let expected = format!(
        "{}:{line}:5: warning: spec.http[0].route: the stable/canary weights of route primary changed from 100/0 to 50/50, but CanaryPolicy default/pneumonia drives them: traffic stays at the rollout's 95/5",
        file.display()
    );
    let warnings = dump["configs"][0]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.starts_with(&expected))),
        "{expected}\n{warnings:?}"
    );
}

/// `/config_dump` shows the consistentHash key a route is hashed on (which in augur picks the
/// version too), and a reload that changes the key shows the new one.
#[test]
fn config_dump_shows_the_hash_key_of_a_route_and_its_reloaded_value() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pneumonia.yaml");
    let hashed = |hash: &str| {
        policy(&v1, &v2, 80, 20).replace(
            "metadata: {name: pneumonia}\nspec:\n  host: pneumonia\n  subsets:\n",
            &format!(
                "metadata: {{name: pneumonia, annotations: {{augur.dev/sticky-version: \"true\"}}}}\n\
                 spec:\n  host: pneumonia\n  trafficPolicy:\n    loadBalancer:\n      \
                 consistentHash: {hash}\n  subsets:\n"
            ),
        )
    };
    let with_header = hashed("{httpHeaderName: x-user}");
    assert_ne!(with_header, policy(&v1, &v2, 80, 20), "the hash is written");
    std::fs::write(&file, &with_header).unwrap();
    let proxy = Proxy::start(&[&file]);
    let hash_key = |proxy: &Proxy| {
        let dump: serde_json::Value =
            serde_json::from_str(&proxy.admin_get("/config_dump").body).expect("JSON");
        dump["configs"][0]["routes"]["routes"][0]["hash_key"].clone()
    };
    assert_eq!(hash_key(&proxy), "header x-user");
    let version = proxy.config_version();
    augur_tests::policy::write_atomically(&file, hashed("{httpCookie: {name: user, ttl: 0s}}"));
    wait_for("the edit to be applied", Duration::from_secs(10), || {
        (proxy.config_version() != version).then_some(())
    });
    assert_eq!(hash_key(&proxy), "cookie user");
}
