//! HTTP/1 request smuggling, from raw client bytes to a recording echo origin
//! (`reference/reliability.md` §4.1): conflicting and obfuscated framing, HTTP/1.0 bodies,
//! invalid `Content-Length`, a request pipelined after `Upgrade`, early responses with an
//! unread body, and client-nominated `Connection` headers.
//!
//! Each payload hides a complete request for `/smuggled` where only a wrong reading of the
//! framing would find it. The pass criterion is Envoy's: the proxy answers 4xx and closes, or
//! the origin sees exactly the request the client sent; the origin never parses
//! `/smuggled`, and every request it parses went through augur (it carries
//! `x-envoy-attempt-count`).

use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::{exchange, model_policy, peak_rss_kib, EchoOrigin};

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: model\r\n\r\n";

/// What the proxy must do with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Answer 4xx (and close); nothing reaches the origin.
    Rejected,
    /// Either that, or forward exactly one request (whose body may hold the smuggled bytes).
    RejectedOrOne,
}

struct Case {
    name: &'static str,
    raw: String,
    expect: Expect,
}

fn case(name: &'static str, raw: String, expect: Expect) -> Case {
    Case { name, raw, expect }
}

/// `POST /a` with the given framing headers and `body`, then nothing else.
fn post(version: &str, framing: &str, body: &str) -> String {
    format!("POST /a HTTP/{version}\r\nHost: model\r\n{framing}\r\n{body}")
}

fn catalogue() -> Vec<Case> {
    use Expect::*;
    let chunked_then_smuggled = format!("0\r\n\r\n{SMUGGLED}");
    // The length that makes the smuggled request body under a Content-Length reading.
    let cl = chunked_then_smuggled.len();
    let te_cl = |te: &str| {
        post(
            "1.1",
            &format!("Content-Length: {cl}\r\n{te}\r\n"),
            &chunked_then_smuggled,
        )
    };
    let body_cl = |value: &str| {
        post(
            "1.1",
            &format!("Content-Length: {value}\r\n"),
            &format!("{SMUGGLED}{}", "p".repeat(8)),
        )
    };
    vec![
        // 1. Content-Length with Transfer-Encoding, both orders and obfuscated.
        case(
            "CL then TE",
            post(
                "1.1",
                &format!("Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n"),
                &chunked_then_smuggled,
            ),
            Rejected,
        ),
        case(
            "TE then CL",
            post(
                "1.1",
                &format!("Transfer-Encoding: chunked\r\nContent-Length: {cl}\r\n"),
                &chunked_then_smuggled,
            ),
            Rejected,
        ),
        case(
            "TE with tab",
            te_cl("Transfer-Encoding:\tchunked"),
            Rejected,
        ),
        case(
            "TE space before colon",
            te_cl("Transfer-Encoding : chunked"),
            Rejected,
        ),
        case(
            "TE xchunked",
            te_cl("Transfer-Encoding: xchunked"),
            Rejected,
        ),
        case(
            "TE chunked, identity",
            te_cl("Transfer-Encoding: chunked, identity"),
            Rejected,
        ),
        case(
            "TE twice",
            te_cl("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
            Rejected,
        ),
        case(
            "TE vertical tab",
            te_cl("Transfer-Encoding:\x0bchunked"),
            Rejected,
        ),
        // 2. Obfuscated Transfer-Encoding alone.
        case(
            "TE xchunked alone",
            post(
                "1.1",
                "Transfer-Encoding: xchunked\r\n",
                &chunked_then_smuggled,
            ),
            Rejected,
        ),
        case(
            "TE chunked then identity lines",
            post(
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                &chunked_then_smuggled,
            ),
            Rejected,
        ),
        case(
            "TE gzip, chunked (chunked last: valid)",
            post("1.1", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            RejectedOrOne,
        ),
        // 3. HTTP/1.0 bodies.
        case(
            "HTTP/1.0 close-delimited body",
            post("1.0", "", SMUGGLED),
            RejectedOrOne,
        ),
        case(
            "HTTP/1.0 with TE",
            post(
                "1.0",
                "Transfer-Encoding: chunked\r\n",
                &chunked_then_smuggled,
            ),
            Rejected,
        ),
        // Istio's Envoy refuses HTTP/1.0 (426 Upgrade Required), and so does augur.
        case(
            "HTTP/1.0 with CL",
            post(
                "1.0",
                &format!("Content-Length: {}\r\n", SMUGGLED.len()),
                SMUGGLED,
            ),
            Rejected,
        ),
        // 4. Invalid Content-Length.
        case("CL +n", body_cl("+47"), Rejected),
        case("CL -1", body_cl("-1"), Rejected),
        case("CL hex", body_cl("0x2f"), Rejected),
        case("CL underscore", body_cl("4_7"), Rejected),
        case("CL two values", body_cl("47, 48"), Rejected),
        case(
            "CL same value twice (Envoy: 400)",
            body_cl("47, 47"),
            Rejected,
        ),
        case("CL overflow", body_cl("99999999999999999999"), Rejected),
        case(
            "CL twice, different",
            post(
                "1.1",
                "Content-Length: 47\r\nContent-Length: 0\r\n",
                &format!("{SMUGGLED}{}", "p".repeat(8)),
            ),
            Rejected,
        ),
        // 5. Chunked syntax.
        case(
            "chunk size 0_2e",
            post(
                "1.1",
                "Transfer-Encoding: chunked\r\n",
                &format!("0_2e\r\n{SMUGGLED}0\r\n\r\n"),
            ),
            Rejected,
        ),
        case(
            "chunk size not hex",
            post(
                "1.1",
                "Transfer-Encoding: chunked\r\n",
                &format!("zz\r\n{SMUGGLED}0\r\n\r\n"),
            ),
            Rejected,
        ),
        // 6. Header syntax.
        case(
            "obs-fold continuation",
            "GET /fold HTTP/1.1\r\nHost: model\r\nx-a: 1\r\n x-b: 2\r\n\r\n".to_owned(),
            RejectedOrOne,
        ),
        case(
            "NUL in a value",
            "GET /nul HTTP/1.1\r\nHost: model\r\nx-a: a\x00b\r\n\r\n".to_owned(),
            Rejected,
        ),
        case(
            "two Host headers",
            "GET /hosts HTTP/1.1\r\nHost: model\r\nHost: other\r\n\r\n".to_owned(),
            Rejected,
        ),
    ]
}

fn start() -> (EchoOrigin, Proxy, tempfile::TempDir) {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(&[&policy], &["--max-request-body-bytes", "1000"]);
    (origin, proxy, dir)
}

/// Nothing parsed `/smuggled`, and every parsed request came through augur.
fn assert_origin_clean(origin: &EchoOrigin, what: &str) {
    for req in origin.requests() {
        assert_ne!(
            req.target, "/smuggled",
            "{what}: smuggled request reached the origin"
        );
        assert!(
            req.header("x-envoy-attempt-count").is_some(),
            "{what}: origin parsed a request augur did not forward: {req:?}"
        );
    }
}

#[test]
fn malformed_framing_never_reaches_the_origin_as_a_request() {
    let (origin, proxy, _dir) = start();
    let cases = catalogue();
    let mut failures = Vec::new();
    for c in &cases {
        let before = origin.requests().len();
        let r = exchange(proxy.listen, c.raw.as_bytes(), Duration::from_secs(2));
        let statuses = r.statuses();
        std::thread::sleep(Duration::from_millis(50));
        let reached = origin.requests().len() - before;
        let rejected = !statuses.is_empty()
            && statuses.iter().all(|s| (400..500).contains(s))
            && reached == 0
            && r.closed;
        let one = statuses == vec![200] && reached == 1;
        let ok = match c.expect {
            Expect::Rejected => rejected,
            Expect::RejectedOrOne => rejected || one,
        };
        println!(
            "{:<40} statuses={statuses:?} closed={} origin_requests={reached} {}",
            c.name,
            r.closed,
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failures.push(format!("{}: {statuses:?}, origin saw {reached}", c.name));
        }
    }
    assert_origin_clean(&origin, "catalogue");
    // A body augur stops forwarding half-way (bad chunk syntax) leaves the origin with a
    // truncated request, never with one it frames differently.
    let framing: Vec<String> = origin
        .errors()
        .into_iter()
        .filter(|e| !e.starts_with("closed inside") && !e.starts_with("closed after"))
        .collect();
    assert!(framing.is_empty(), "origin framing errors: {framing:?}");
    assert!(failures.is_empty(), "{failures:#?}");
    println!(
        "FIGURES class=smuggling tried={} failures=0 peak_rss_kib={}",
        cases.len(),
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn a_request_pipelined_after_upgrade_is_parsed_by_augur_not_tunnelled() {
    let (origin, proxy, _dir) = start();
    // The origin answers 200, not 101: the bytes after the request are a new request for
    // augur to route, never raw bytes on the upstream connection.
    let raw =
        "GET /ws HTTP/1.1\r\nHost: model\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
               GET /pipelined HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n";
    let r = exchange(proxy.listen, raw.as_bytes(), Duration::from_secs(3));
    println!("upgrade + pipelined: statuses={:?}", r.statuses());
    assert_origin_clean(&origin, "upgrade");
    let seen: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(seen.first().map(String::as_str), Some("/ws"), "{seen:?}");
    assert!(origin.errors().is_empty(), "{:?}", origin.errors());
}

#[test]
fn early_responses_never_let_the_unread_body_through() {
    let (origin, proxy, _dir) = start();
    let padded = format!("{SMUGGLED}{}", "p".repeat(2000 - SMUGGLED.len()));
    let cases = [
        // No route (404 NR), body unread.
        format!(
            "POST /x HTTP/1.1\r\nHost: nowhere\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        ),
        // Declared body over the limit (413), body unread.
        format!("POST /x HTTP/1.1\r\nHost: model\r\nContent-Length: 2000\r\n\r\n{padded}"),
        // Too many headers (431) with a body.
        {
            let mut raw = "POST /x HTTP/1.1\r\nHost: model\r\n".to_owned();
            for i in 0..120 {
                raw.push_str(&format!("x-h{i}: v\r\n"));
            }
            raw.push_str(&format!(
                "Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ));
            raw
        },
    ];
    for raw in &cases {
        let r = exchange(proxy.listen, raw.as_bytes(), Duration::from_secs(2));
        let statuses = r.statuses();
        println!("early response: statuses={statuses:?} closed={}", r.closed);
        assert_eq!(statuses.len(), 1, "{}", r.text());
        assert!((400..500).contains(&statuses[0]), "{}", r.text());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    println!(
        "FIGURES class=early-responses tried={} failures=0 peak_rss_kib={}",
        cases.len(),
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn authentication_and_rate_limit_refusals_never_let_the_unread_body_through() {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let protection = "apiVersion: augur.dev/v1alpha1\nkind: ApiProtection\nmetadata: {name: model-api}\n\
                      spec:\n  virtualService: {name: model}\n  apiKey: {keysFrom: {env: SMUGGLING_TEST_KEYS}}\n  \
                      rateLimit: {key: apiKey, tokenBucket: {maxTokens: 1, fillInterval: 1h}}\n";
    let route = "  - route:\n    - destination: {host: model, subset: v1}\n";
    let policy = augur_tests::policy::write(
        dir.path(),
        &[
            &augur_tests::policy::service("model", &[("v1", origin.addr.port())]),
            &augur_tests::policy::virtual_service("model", route),
            protection,
        ],
    );
    let proxy = Proxy::start_with_env(&[&policy], &[("SMUGGLING_TEST_KEYS", "k-123")]);
    let post = |key: &str| {
        format!(
            "POST /x HTTP/1.1\r\nHost: model\r\n{key}Content-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        )
    };
    let cases = [
        (post(""), 401),                     // no key
        (post("x-api-key: wrong\r\n"), 401), // unknown key
        (post("x-api-key: k-123\r\n"), 200), // takes the only token
        (post("x-api-key: k-123\r\n"), 429), // bucket empty
    ];
    for (raw, want) in &cases {
        let r = exchange(proxy.listen, raw.as_bytes(), Duration::from_secs(2));
        println!("refusal: statuses={:?} closed={}", r.statuses(), r.closed);
        assert_eq!(r.statuses(), vec![*want], "{}", r.text());
    }
    std::thread::sleep(Duration::from_millis(100));
    let seen: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(seen, ["/x"], "only the accepted request reached the origin");
    assert_origin_clean(&origin, "401/429");
    println!(
        "FIGURES class=early-401-429 tried={} failures=0 peak_rss_kib={}",
        cases.len(),
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn client_nominated_connection_headers_cannot_strip_what_augur_adds() {
    let (origin, proxy, _dir) = start();
    // Nominating the Host or forwarding headers is refused outright (pingora 0.9, as Envoy).
    for nominated in ["host", "x-forwarded-proto", "x-forwarded-for"] {
        let raw =
            format!("GET /protected HTTP/1.1\r\nHost: model\r\nConnection: {nominated}\r\n\r\n");
        let r = exchange(proxy.listen, raw.as_bytes(), Duration::from_secs(3));
        assert_eq!(
            r.statuses(),
            vec![400],
            "Connection: {nominated}: {}",
            r.text()
        );
    }
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    let raw = "GET /conn HTTP/1.1\r\nHost: model\r\n\
               Connection: keep-alive, x-internal, x-request-id, x-envoy-attempt-count, content-length\r\n\
               x-internal: leak\r\nx-request-id: client-chosen\r\nConnection: close\r\n\r\n";
    let r = exchange(proxy.listen, raw.as_bytes(), Duration::from_secs(3));
    assert_eq!(r.statuses(), vec![200], "{}", r.text());
    let req = origin
        .requests()
        .pop()
        .expect("the request reached the origin");
    assert_eq!(req.target, "/conn");
    assert_eq!(req.header("x-internal"), None, "a nominated header leaked");
    assert_eq!(
        req.header("connection"),
        None,
        "hop-by-hop header forwarded"
    );
    assert_eq!(req.header("host"), Some("model"));
    assert_eq!(req.header("x-envoy-attempt-count"), Some("1"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert!(
        req.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "the request id was stripped: {req:?}"
    );
    assert_origin_clean(&origin, "connection");
}
