//! `augur controller`'s admin surface: the policy set it starts with and every command sent to
//! it, carried out or refused, are in the admin audit log in its `--state-dir` (who, from
//! where, what, and the answer; never the token), and its `/ui` dashboard with the JSON the page reads shows the controller's rollout,
//! under the same token rule as the rest of its API.
//!
//! Refusals need a caller beyond loopback: the tests call the controller at this machine's own
//! non-loopback address (the kernel then uses that address as the source, so the controller
//! sees a peer that is not loopback), with no network namespace.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use augur_tests::augur::Controller;
use augur_tests::http::{self, Response};
use augur_tests::policy::{canary_policy, service, virtual_service, write};
use augur_tests::upstream::Upstream;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

const TOKEN: &str = "controller-TOKEN-9f3a";

/// Route `primary` of `model` split between v1 and v2 by a rollout that pauses at 30% and 60%
/// until promoted (as in controller.rs).
fn policy(dir: &Path, v1: &Upstream, v2: &Upstream) -> PathBuf {
    let vs = virtual_service(
        "model",
        "  - name: primary\n    retries: {attempts: 0}\n    route:\n    - destination: {host: model, subset: v1}\n      weight: 100\n    - destination: {host: model, subset: v2}\n      weight: 0\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let canary = canary_policy(
        "model",
        "  steps:\n  - setWeight: 30\n  - pause: {}\n  - setWeight: 60\n  - pause: {}\n  - setWeight: 100\n  \
         analysis:\n    interval: 1s\n    metrics:\n    - name: error-rate\n      kind: errorRate\n      allowedChange: {absolute: 5}\n",
    );
    write(dir, &[&vs, &svc, &canary])
}

/// An address of this machine that is not loopback: the source address of a route out.
fn non_loopback_ip() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    // TEST-NET-3: connecting a UDP socket sends nothing, it only picks a route and a source.
    socket
        .connect("203.0.113.1:9")
        .expect("this test needs an IPv4 route beyond loopback (a default route)");
    let ip = socket.local_addr().expect("local address").ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "got {ip}");
    ip
}

/// Starts a controller with `--token` [`TOKEN`], its API on every address.
fn controller(file: &Path, state: &Path) -> Controller {
    let any = "0.0.0.0:0".parse().expect("address");
    Controller::start(&[file], state, any, &["--token", TOKEN], None)
}

/// `method path` to `addr`, with `Authorization: Bearer <token>` when given.
fn call(addr: SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> Response {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: controller\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http::request(addr, &raw).expect("controller request")
}

/// The controller's one rollout, from `GET /rollouts` on loopback.
fn rollout(c: &Controller) -> Value {
    let all: Value = serde_json::from_str(&c.get("/rollouts").body).expect("rollouts JSON");
    all["rollouts"][0].clone()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Commands to the controller's API port from loopback and from beyond it, with the token,
/// without it and with a wrong one, and to its admin port: each is one line of `audit.jsonl`
/// in the state directory, written before the answer, naming the peer, how it was admitted,
/// the endpoint, the rollout and command (only once the rollout was found) and the status.
/// Reads are not recorded; neither the token nor anything a client chose freely is written.
#[test]
fn every_command_to_the_controller_is_audited_with_its_peer_and_outcome() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = policy(dir.path(), &v1, &v2);
    let state = tempfile::tempdir().unwrap();
    let c = controller(&file, state.path());
    // Where the proxy writes its own by default (`--audit-log`).
    let audit = state.path().join("audit.jsonl");
    let far_ip = non_loopback_ip();
    let far = SocketAddr::new(far_ip, c.listen.port());
    let lo = SocketAddr::new("127.0.0.1".parse().unwrap(), c.listen.port());
    assert_eq!(rollout(&c)["weights"]["canary"], 30);

    // 1. From loopback, no token: carried out.
    let promote = "/rollouts/model/promote";
    assert_eq!(call(lo, "POST", promote, "", None).status, 200);
    // 2, 3. From beyond loopback without the token, and with a wrong one: refused, not done.
    assert_eq!(
        call(far, "POST", "/rollouts/model/abort", "", None).status,
        401
    );
    let wrong = Some("not-the-token");
    assert_eq!(
        call(far, "POST", "/rollouts/model/abort", "", wrong).status,
        401
    );
    assert_eq!(
        rollout(&c)["weights"]["canary"],
        60,
        "promoted, not aborted"
    );
    // 4, 5. From beyond loopback with the token: carried out.
    let label = r#"{"request_id": "PHI-MARK-0", "label": "PHI-MARK-1"}"#;
    assert_eq!(call(far, "POST", "/labels", label, Some(TOKEN)).status, 200);
    let abort = "/rollouts/default/model/abort";
    assert_eq!(call(far, "POST", abort, "", Some(TOKEN)).status, 200);
    assert_eq!(rollout(&c)["weights"]["canary"], 0, "aborted");
    // 6. A command its state does not allow (409): still recorded, with the rollout.
    assert_eq!(call(lo, "POST", promote, "", None).status, 409);
    // 7, 8, 9. An unknown rollout, an unknown command and a bad body: the names and the body
    // are the client's own words, and are not recorded.
    let unknown = "/rollouts/PHI-MARK-2/promote";
    assert_eq!(call(lo, "POST", unknown, "", None).status, 404);
    let verb = "/rollouts/model/PHI-MARK-3";
    assert_eq!(call(lo, "POST", verb, "", None).status, 404);
    let body = r#"{"PHI-MARK-4": true}"#;
    assert_eq!(call(lo, "POST", promote, body, None).status, 400);
    // 10. The admin port (loopback only) writes to the same log.
    assert_eq!(
        call(c.admin, "POST", "/rollouts/model/retry", "", None).status,
        200
    );
    // Reads, allowed or refused, are not commands.
    assert_eq!(call(far, "GET", "/rollouts", "", None).status, 401);
    assert_eq!(call(far, "GET", "/rollouts", "", Some(TOKEN)).status, 200);
    assert_eq!(call(lo, "GET", "/ui", "", None).status, 200);

    let mut log = lines(&audit);
    // First the policy set it started with, as the proxy records its own.
    let startup = log.remove(0);
    assert_eq!(
        (&startup["kind"], &startup["trigger"], &startup["outcome"]),
        (&json!("policy"), &json!("startup"), &json!("loaded")),
        "{startup}"
    );
    assert_eq!(startup["files"], json!([file.to_str().unwrap()]));
    assert!(startup["new_hash"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(log.iter().all(|l| l["kind"] == "admin"), "{log:#?}");
    let got: Vec<Value> = log
        .iter()
        .map(|l| {
            json!([
                l["actor"]["admission"],
                l["endpoint"],
                l["params"],
                l["status"]
            ])
        })
        .collect();
    let command = "/rollouts/{name}/{command}";
    let expected = vec![
        json!(["loopback", command, {"rollout": "model", "command": "promote"}, 200]),
        json!(["refused", command, {}, 401]),
        json!(["refused", command, {}, 401]),
        json!(["bearer", "/labels", {"received": 1, "forwarded_to": 0}, 200]),
        json!(["bearer", command, {"rollout": "default/model", "command": "abort"}, 200]),
        json!(["loopback", command, {"rollout": "model", "command": "promote"}, 409]),
        json!(["loopback", command, {}, 404]),
        json!(["loopback", command, {}, 404]),
        json!(["loopback", command, {}, 400]),
        json!(["loopback", command, {"rollout": "model", "command": "retry"}, 200]),
    ];
    assert_eq!(got, expected, "{log:#?}");
    let peers: Vec<IpAddr> = log
        .iter()
        .map(|l| {
            let peer: SocketAddr = l["actor"]["peer"].as_str().unwrap().parse().unwrap();
            peer.ip()
        })
        .collect();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let expected_peers = [
        loopback, far_ip, far_ip, far_ip, far_ip, loopback, loopback, loopback, loopback, loopback,
    ];
    assert_eq!(peers, expected_peers);
    assert!(log
        .iter()
        .all(|l| l["method"] == "POST" && l["time"].as_str().unwrap().ends_with('Z')));

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(TOKEN), "the token is never written");
    assert!(!text.contains("not-the-token"), "nor a wrong one");
    assert!(
        !text.contains("PHI-MARK"),
        "free-form client input is never written"
    );
}

/// The controller's `/ui` and the JSON its page reads (`/rollouts`, then
/// `/rollouts/{name}/history`) show the controller's rollout: its name, step and weights, and
/// follow a command. The page and its reads answer loopback on both ports; from beyond
/// loopback they need the token, like the rest of the controller's API, and a refusal tells
/// nothing.
#[test]
fn the_controllers_dashboard_shows_its_rollout_under_the_token_rule() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = policy(dir.path(), &v1, &v2);
    let state = tempfile::tempdir().unwrap();
    let c = controller(&file, state.path());
    let lo = SocketAddr::new("127.0.0.1".parse().unwrap(), c.listen.port());
    let far = SocketAddr::new(non_loopback_ip(), c.listen.port());

    // The page, on the API port and on the admin port.
    for port in [lo, c.admin] {
        for (path, kind) in [
            ("/ui", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let r = call(port, "GET", path, "", None);
            assert_eq!(r.status, 200, "GET {path} on {port}");
            assert!(
                r.header("content-type").unwrap_or("").starts_with(kind),
                "GET {path}: {:?}",
                r.header("content-type")
            );
        }
        let page = call(port, "GET", "/ui", "", None).body;
        assert!(page.contains("/ui/app.js") && page.contains("augur: rollouts"));
    }
    // What the page reads: the list, then the selected rollout's history.
    let script = call(lo, "GET", "/ui/app.js", "", None).body;
    assert!(script.contains(r#"getJson("/rollouts")"#) && script.contains(r#""/history""#));

    let shows = |port: SocketAddr, canary: u64, step: u64| {
        let all: Value =
            serde_json::from_str(&call(port, "GET", "/rollouts", "", None).body).unwrap();
        let r = &all["rollouts"][0];
        assert_eq!(r["name"], "default/model", "{all}");
        assert_eq!(r["step"], step, "{all}");
        assert_eq!(
            r["weights"],
            json!({"stable": 100 - canary, "canary": canary})
        );
        let history: Value = serde_json::from_str(
            &call(port, "GET", "/rollouts/default/model/history", "", None).body,
        )
        .unwrap();
        assert_eq!(history["name"], "default/model");
        let decisions = history["decisions"].as_array().expect("decisions");
        assert!(
            decisions
                .iter()
                .any(|d| d["step"] == step && d["weights"]["canary"] == canary),
            "a decision to step {step} at {canary}%: {history}"
        );
    };
    for port in [lo, c.admin] {
        shows(port, 30, 1);
    }
    assert_eq!(
        call(c.admin, "POST", "/rollouts/model/promote", "", None).status,
        200
    );
    for port in [lo, c.admin] {
        shows(port, 60, 3);
    }
    assert_eq!(
        call(lo, "GET", "/rollouts/nope/history", "", None).status,
        404
    );

    // From beyond loopback: nothing without the token, not even the page.
    for path in [
        "/ui",
        "/ui/app.js",
        "/rollouts",
        "/rollouts/default/model/history",
    ] {
        let refused = call(far, "GET", path, "", None);
        assert_eq!(refused.status, 401, "GET {path} without the token");
        for secret in ["model", "weight", "canary", "step", "augur"] {
            assert!(
                !refused.body.contains(secret),
                "GET {path}: the refusal tells nothing: {:?}",
                refused.body
            );
        }
        let wrong = call(far, "GET", path, "", Some("not-the-token"));
        assert_eq!(wrong.status, 401, "GET {path} with a wrong token");
        assert_eq!(
            call(far, "GET", path, "", Some(TOKEN)).status,
            200,
            "GET {path} with the token"
        );
    }
    let all: Value =
        serde_json::from_str(&call(far, "GET", "/rollouts", "", Some(TOKEN)).body).unwrap();
    assert_eq!(all["rollouts"][0]["weights"]["canary"], 60);
}

/// The policy files' reloads are in the controller's audit log as in the proxy's: an edit that
/// applies is recorded with the old and new hash, one that does not validate with its
/// diagnostics (`file:line:column`), and the last good set keeps running.
#[test]
fn the_controllers_policy_reloads_are_audited_applied_or_rejected() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let file = policy(dir.path(), &v1, &v2);
    let state = tempfile::tempdir().unwrap();
    let c = controller(&file, state.path());
    let audit = state.path().join("audit.jsonl");
    let policy_lines = || -> Vec<Value> {
        lines(&audit)
            .into_iter()
            .filter(|l| l["kind"] == "policy")
            .collect()
    };
    let started = policy_lines();
    assert_eq!(started.len(), 1, "{started:#?}");
    let first_hash = started[0]["new_hash"].clone();

    // A valid edit: the error-rate allowance 5 → 6 points.
    // Rewrites the policy file with `from` replaced by `to`, and waits for audit line `n`.
    let edit = |from: &str, to: &str, n: usize| -> Value {
        let text = std::fs::read_to_string(&file).unwrap();
        let edited = text.replace(from, to);
        assert_ne!(
            edited, text,
            "the test's edit {from:?} applies to the policy"
        );
        augur_tests::policy::write_atomically(&file, &edited);
        augur_tests::wait_for(
            &format!("audit line {n} after the edit {to:?}"),
            std::time::Duration::from_secs(30),
            || policy_lines().get(n).cloned(),
        )
    };
    let applied = edit(
        "allowedChange: {absolute: 5}",
        "allowedChange: {absolute: 6}",
        1,
    );
    assert_eq!(
        (
            &applied["trigger"],
            &applied["outcome"],
            &applied["old_hash"]
        ),
        (&json!("file change"), &json!("applied"), &first_hash),
        "{applied}"
    );
    let second_hash = applied["new_hash"].clone();
    assert_ne!(second_hash, first_hash);

    // An edit that does not validate: a step's weight of 130%.
    let rejected = edit("setWeight: 30", "setWeight: 130", 2);
    assert_eq!(
        (
            &rejected["outcome"],
            &rejected["old_hash"],
            &rejected["new_hash"]
        ),
        (&json!("rejected"), &second_hash, &second_hash),
        "the last good set keeps running: {rejected}"
    );
    let errors = rejected["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("{}:", file.display())))),
        "diagnostics placed at file:line:column: {rejected}"
    );
    assert_eq!(rollout(&c)["weights"]["canary"], 30, "still running");
}
