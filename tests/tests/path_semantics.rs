//! Faults and direct responses see the normalized path, as routes and ApiProtection do
//! (docs/hardening.md, "Path normalization"): a disguised path that resolves to a route with a
//! `directResponse` or a `fault` gets that route's answer and never reaches the backend, the
//! bypass of issue 17 (CVE-2021-31920). With `--path-normalization NONE` the same paths reach
//! the backend as received, which shows that normalization is what stops them.

use std::path::Path;

use augur_tests::augur::Proxy;
use augur_tests::http::{self, Response};
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::Upstream;

/// The direct response of the `/admin` route.
const CLOSED: &str = "admin is closed";

/// Paths that an origin resolving them per RFC 3986 (nginx, most frameworks) serves as
/// `/admin/x`: a dot-dot segment, a dot segment, an encoded dot-dot, an encoded letter.
const ADMIN: [&str; 4] = [
    "/public/../admin/x",
    "/./admin/x",
    "/public/%2e%2e/admin/x",
    "/%61dmin/x",
];

/// The same disguises for `/internal/x` (`%69` is `i`).
const INTERNAL: [&str; 4] = [
    "/public/../internal/x",
    "/./internal/x",
    "/public/%2e%2e/internal/x",
    "/%69nternal/x",
];

/// `/admin` answers directly, `/internal` is aborted with 503 by a fault on its way to the
/// backend, everything else goes to the backend.
fn policy(dir: &Path, backend: &Upstream) -> std::path::PathBuf {
    let http = format!(
        "  - name: admin\n    match: [{{uri: {{prefix: /admin}}}}]\n    \
         directResponse: {{status: 403, body: {{string: \"{CLOSED}\"}}}}\n  \
         - name: internal\n    match: [{{uri: {{prefix: /internal}}}}]\n    \
         fault:\n      abort: {{httpStatus: 503, percentage: {{value: 100}}}}\n    \
         route: [{{destination: {{host: model, subset: v1}}}}]\n  \
         - name: public\n    route: [{{destination: {{host: model, subset: v1}}}}]\n"
    );
    write(
        dir,
        &[
            &virtual_service("model", &http),
            &service("model", &[("v1", backend.addr.port())]),
        ],
    )
}

fn get(proxy: &Proxy, path: &str) -> Response {
    http::get(proxy.listen, "model", path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[test]
fn faults_and_direct_responses_see_the_normalized_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Upstream::start("v1");
    let file = policy(dir.path(), &backend);
    let proxy = Proxy::start(&[&file]);

    // The plain paths first: each route does what it says.
    let plain = get(&proxy, "/admin/x");
    assert_eq!((plain.status, plain.body.as_str()), (403, CLOSED));
    assert_eq!(get(&proxy, "/internal/x").status, 503);
    assert_eq!(
        backend.served(),
        0,
        "neither plain path reached the backend"
    );

    for path in ADMIN {
        let r = get(&proxy, path);
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, CLOSED),
            "{path} resolves to /admin/x: the direct response"
        );
    }
    for path in INTERNAL {
        let r = get(&proxy, path);
        assert_eq!(r.status, 503, "{path} resolves to /internal/x: the fault");
        assert!(
            !r.body.contains("model_version"),
            "{path}: the fault answered, not the backend: {}",
            r.body
        );
    }
    assert_eq!(
        backend.served(),
        0,
        "no disguised path reached the backend: {:?}",
        backend.received()
    );

    // A path that really is public still reaches the backend, normalized.
    assert_eq!(get(&proxy, "/public/./x").status, 200);
    assert_eq!(backend.received()[0].line, "GET /public/x HTTP/1.1");
}

#[test]
fn without_normalization_the_disguised_paths_reach_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Upstream::start("v1");
    let file = policy(dir.path(), &backend);
    let proxy = Proxy::start_with_args(&[&file], &["--path-normalization", "NONE"]);

    // The routes themselves still hold for the plain paths.
    let plain = get(&proxy, "/admin/x");
    assert_eq!((plain.status, plain.body.as_str()), (403, CLOSED));
    assert_eq!(get(&proxy, "/internal/x").status, 503);
    assert_eq!(backend.served(), 0);

    // Every disguise slips past both routes and is forwarded as received: the bypass that
    // normalization closes.
    for (i, path) in ADMIN.iter().chain(&INTERNAL).enumerate() {
        let r = get(&proxy, path);
        assert_eq!(r.status, 200, "{path} with NONE");
        assert!(r.body.contains("\"v1\""), "{path}: {}", r.body);
        assert_eq!(
            backend.received()[i].line,
            format!("GET {path} HTTP/1.1"),
            "{path} is forwarded as received"
        );
    }
}
