//! ApiProtection: API keys answered like Envoy's `api_key_auth` (401) and token buckets like
//! Envoy's `local_ratelimit` (429 `local_rate_limited`, flag RL, `x-envoy-ratelimited`), per
//! client IP and per key, kept across hot reloads; the keys appear in no log, metric or dump.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http::{self, Response};
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;

const ALPHA: &str = "alpha-KEY-7f3c9e21";
const BETA: &str = "beta-KEY-0b8d44aa";

fn policy(dir: &Path, up: &Upstream, comment: &str) -> PathBuf {
    let keys = dir.join("api-keys");
    std::fs::write(&keys, format!("# clients\n{ALPHA}\n{BETA}\n")).unwrap();
    let file = dir.join("policy.yaml");
    let yaml = format!(
        r#"# {comment}
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: model}}
spec:
  hosts: [model]
  http:
  - name: keyed
    match: [{{uri: {{prefix: /keyed}}}}]
    route: [{{destination: {{host: model}}}}]
  - name: open
    route: [{{destination: {{host: model}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model}}
spec:
  hosts: [model]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {{name: keyed}}
spec:
  virtualService: {{name: model, routes: [keyed]}}
  apiKey:
    keysFrom: {{file: {keys}}}
    hideCredentials: true
  rateLimit:
    key: apiKey
    tokenBucket: {{maxTokens: 100, tokensPerFill: 100, fillInterval: 60s}}
---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {{name: per-ip}}
spec:
  virtualService: {{name: model, routes: [open]}}
  rateLimit:
    key: sourceIP
    tokenBucket: {{maxTokens: 100, tokensPerFill: 100, fillInterval: 60s}}
"#,
        port = up.addr.port(),
        keys = keys.display(),
    );
    std::fs::write(&file, yaml).unwrap();
    file
}

fn get(proxy: &Proxy, path: &str, key: Option<&str>) -> Response {
    let key = key
        .map(|k| format!("x-api-key: {k}\r\n"))
        .unwrap_or_default();
    http::request(
        proxy.listen,
        &format!("GET {path} HTTP/1.1\r\nHost: model\r\n{key}Connection: close\r\n\r\n"),
    )
    .expect("request")
}

fn assert_rate_limited(r: &Response) {
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.body, "local_rate_limited");
    assert_eq!(r.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(r.header("server"), Some("envoy"));
}

#[test]
fn keys_and_rate_limits_answer_like_envoy_and_never_leak_the_key() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let file = policy(dir.path(), &up, "first");
    // Logs live beside, not in, the watched policy directory: every line written there
    // would be a file event and postpone the reload.
    let logs = tempfile::tempdir().unwrap();
    let access = logs.path().join("access.log");
    let log = logs.path().join("augur.log");
    let proxy = Proxy::start_full(
        &[&file],
        &[
            "--access-log",
            access.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
        &[],
        Some(&log),
    );
    assert_eq!(proxy.admin_post("/logging?level=debug", "").status, 200);

    // No key, a wrong key: Envoy's api_key_auth reply, and the model never sees them.
    let none = get(&proxy, "/keyed", None);
    assert_eq!(
        (none.status, none.body.as_str()),
        (401, "Client authentication failed.")
    );
    let wrong = get(&proxy, "/keyed", Some("alpha-KEY-7f3c9e2"));
    assert_eq!(wrong.status, 401);
    let empty_bearer = get(&proxy, "/keyed", Some("Bearer "));
    assert_eq!(empty_bearer.status, 401);
    assert_eq!(up.served(), 0);

    // A good key, plain or as a bearer token; hideCredentials strips it before the model.
    assert_eq!(get(&proxy, "/keyed", Some(ALPHA)).status, 200);
    assert_eq!(
        get(&proxy, "/keyed", Some(&format!("Bearer {ALPHA}"))).status,
        200
    );
    assert!(up
        .received()
        .iter()
        .all(|r| r.header("x-api-key").is_none()));

    // Per key: 100 requests a minute, the 101st is limited; another key has its own bucket.
    let mut ok = 2;
    let limited = loop {
        let r = get(&proxy, "/keyed", Some(ALPHA));
        if r.status != 200 {
            break r;
        }
        ok += 1;
        assert!(ok <= 100, "more than 100 requests passed");
    };
    assert_eq!(ok, 100);
    assert_rate_limited(&limited);
    assert_eq!(get(&proxy, "/keyed", Some(BETA)).status, 200);
    // Unknown keys take no token from anyone: still 401, not 429.
    assert_eq!(get(&proxy, "/keyed", Some("nope")).status, 401);

    // Per source IP on the other route.
    for i in 0..100 {
        assert_eq!(get(&proxy, "/open", None).status, 200, "request {i}");
    }
    assert_rate_limited(&get(&proxy, "/open", None));

    // A hot reload keeps the buckets: the limit still holds.
    let before = proxy.admin_get("/config_dump").body;
    policy(dir.path(), &up, "second");
    wait_for("the reload", Duration::from_secs(10), || {
        (proxy.admin_get("/config_dump").body != before).then_some(())
    });
    assert_rate_limited(&get(&proxy, "/open", None));
    assert_rate_limited(&get(&proxy, "/keyed", Some(ALPHA)));

    // Istio's metrics carry the codes and the RL flag.
    let metrics = http::get(proxy.prometheus, "localhost", "/stats/prometheus")
        .unwrap()
        .body;
    let series = |code: &str, flags: &str| {
        metrics.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains(&format!("response_code=\"{code}\""))
                && l.contains(&format!("response_flags=\"{flags}\""))
        })
    };
    assert!(series("429", "RL"), "{metrics}");
    assert!(series("401", "-"), "{metrics}");

    // The access log has the flag and the route.
    let log_text = wait_for("access log lines", Duration::from_secs(5), || {
        let t = std::fs::read_to_string(&access).ok()?;
        t.contains("\"RL\"").then_some(t)
    });
    let limited_line = log_text
        .lines()
        .find(|l| l.contains("\"response_code\":429"))
        .expect("a 429 line");
    assert!(
        limited_line.contains("\"response_flags\":\"RL\""),
        "{limited_line}"
    );
    assert!(log_text
        .lines()
        .any(|l| l.contains("\"response_code\":401")));

    // The keys are nowhere: access log, proxy log, config dump, stats.
    let dump = proxy.admin_get("/config_dump").body;
    // What is protected, and how, is in the config dump: where the keys are read, not the keys.
    let json: serde_json::Value = serde_json::from_str(&dump).expect("config_dump JSON");
    let protections = &json["configs"][0]["routes"]["protections"];
    assert_eq!(
        protections[0]["routes"],
        serde_json::json!(["keyed"]),
        "{dump}"
    );
    assert!(
        protections[0]["api_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("header x-api-key from file ")),
        "{dump}"
    );
    assert_eq!(
        protections[1]["rate_limit"],
        "100 requests per 1m0s per client IP (burst 100)"
    );
    let stats = proxy.admin_get("/stats").body;
    let proxy_log = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [
        ("access log", &log_text),
        ("proxy log", &proxy_log),
        ("config_dump", &dump),
        ("stats", &stats),
        ("prometheus", &metrics),
    ] {
        for key in [ALPHA, BETA, "alpha-KEY", "beta-KEY"] {
            assert!(!text.contains(key), "{what} contains an API key");
        }
    }
}

#[test]
fn a_missing_key_file_rejects_the_reload_and_the_last_good_set_keeps_serving() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let file = policy(dir.path(), &up, "first");
    let proxy = Proxy::start(&[&file]);
    assert_eq!(get(&proxy, "/keyed", Some(ALPHA)).status, 200);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("api-keys", "no-such-file")).unwrap();
    let dump = wait_for("the rejected reload", Duration::from_secs(10), || {
        let d = proxy.admin_get("/config_dump").body;
        d.contains("no-such-file").then_some(d)
    });
    // Placed like every policy error: the file, line and column of the field naming the keys.
    let line = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .position(|l| l.contains("no-such-file"))
        .map_or(0, |i| i + 1);
    let at = format!("{}:{line}:", file.display());
    assert!(
        dump.lines().any(|l| l.contains(&at)
            && l.contains("spec.apiKey.keysFrom.file: cannot read the key file")),
        "{at}
{dump}"
    );
    assert_eq!(get(&proxy, "/keyed", Some(ALPHA)).status, 200);
    assert_eq!(get(&proxy, "/keyed", None).status, 401);
}

/// The bypass Istio closed with `pathNormalization` (CVE-2021-31920): a path that resolves to a
/// protected route on the origin must meet the route's ApiProtection, and the origin gets the
/// path the route saw. With `--path-normalization NONE` (which the docs warn against) the old
/// bypass is back, which shows the test checks what it claims.
#[test]
fn paths_that_resolve_to_a_protected_route_meet_its_key_check() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("v1");
    let file = policy(dir.path(), &up, "normalized");
    let disguised = [
        "/open/../keyed/x",
        "/./keyed/x",
        "/open/%2e%2e/keyed/x",
        "/%6beyed/x",
        "/open\\..\\keyed/x",
    ];
    let proxy = Proxy::start(&[&file]);
    for path in disguised {
        assert_eq!(get(&proxy, path, None).status, 401, "{path} without a key");
    }
    let before = up.received().len();
    assert_eq!(get(&proxy, "/open/%2e%2e/keyed/x", Some(ALPHA)).status, 200);
    assert_eq!(up.received()[before].line, "GET /keyed/x HTTP/1.1");
    // The same request, not normalized, slips past the key check (the bypass itself).
    let unsafe_proxy = Proxy::start_with_args(&[&file], &["--path-normalization", "NONE"]);
    assert_eq!(get(&unsafe_proxy, "/open/../keyed/x", None).status, 200);
}
