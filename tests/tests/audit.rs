//! The audit log records admin mutations (who, what, when; never the token) and policy loads
//! and reloads (old and new hash, files), as JSON lines in `--audit-log`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;
use serde_json::Value;

const TOKEN: &str = "admin-TOKEN-5d1e";

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn admin_actions_and_policy_changes_are_audited() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let vs =
        augur_tests::policy::virtual_service("model", &augur_tests::policy::primary_route("model"));
    let se =
        augur_tests::policy::service("model", &[("v1", up.addr.port()), ("v2", up.addr.port())]);
    let file = augur_tests::policy::write(dir.path(), &[&vs, &se]);
    let proxy = Proxy::start_full(
        &[&file],
        &[
            "--admin-token",
            TOKEN,
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[],
        None,
    );

    let startup = lines(&audit);
    assert_eq!(startup[0]["kind"], "policy");
    assert_eq!(startup[0]["trigger"], "startup");
    assert_eq!(startup[0]["outcome"], "loaded");
    let first_hash = startup[0]["new_hash"].as_str().unwrap().to_owned();

    // From loopback without a token.
    assert_eq!(proxy.admin_post("/logging?level=debug", "").status, 200);
    // With the bearer token.
    let raw = format!(
        "POST /healthcheck/fail HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(http::request(proxy.admin, &raw).unwrap().status, 200);
    // An unknown rollout: the free-form name is not recorded.
    assert_eq!(
        proxy.admin_post("/rollouts/PHI-MARK-1/promote", "").status,
        404
    );
    // A bad level is refused and not recorded either.
    assert_eq!(
        proxy.admin_post("/logging?level=PHI-MARK-2", "").status,
        400
    );
    // Nor a command with a body that does not parse, whatever the rollout it names.
    let bad_body = proxy.admin_post("/rollouts/PHI-MARK-3/promote", "{not json");
    assert_ne!(bad_body.status, 200);

    let log = lines(&audit);
    let admin: Vec<&Value> = log.iter().filter(|l| l["kind"] == "admin").collect();
    assert_eq!(admin.len(), 5, "{log:#?}");
    assert_eq!(admin[0]["endpoint"], "/logging");
    assert_eq!(admin[0]["params"]["level"], "debug");
    assert_eq!(admin[0]["actor"]["admission"], "loopback");
    assert!(admin[0]["actor"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(admin[0]["status"], 200);
    assert!(admin[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(admin[1]["endpoint"], "/healthcheck/fail");
    assert_eq!(admin[1]["actor"]["admission"], "bearer");
    assert_eq!(admin[2]["endpoint"], "/rollouts/{name}/{command}");
    assert_eq!(admin[2]["status"], 404);
    assert_eq!(admin[3]["params"], serde_json::json!({}));
    assert_eq!(admin[3]["status"], 400);
    assert_eq!(admin[4]["params"], serde_json::json!({}), "{:#?}", admin[4]);

    // A valid change, then an invalid one.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("# edited\n{text}")).unwrap();
    let applied = wait_for("the applied reload", Duration::from_secs(10), || {
        lines(&audit)
            .into_iter()
            .find(|l| l["kind"] == "policy" && l["outcome"] == "applied")
    });
    assert_eq!(applied["old_hash"], first_hash.as_str());
    assert_ne!(applied["new_hash"], first_hash.as_str());
    assert_eq!(applied["files"][0], file.to_str().unwrap());
    std::fs::write(&file, "kind: [broken\n").unwrap();
    let rejected = wait_for("the rejected reload", Duration::from_secs(10), || {
        lines(&audit)
            .into_iter()
            .find(|l| l["kind"] == "policy" && l["outcome"] == "rejected")
    });
    assert_eq!(rejected["old_hash"], applied["new_hash"]);
    assert_eq!(
        rejected["new_hash"], applied["new_hash"],
        "the last good set serves"
    );
    assert!(!rejected["errors"].as_array().unwrap().is_empty());

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(TOKEN), "the token is never written");
    assert!(
        !text.contains("PHI-MARK"),
        "free-form client input is never written"
    );
}
