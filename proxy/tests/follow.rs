//! A sidecar following the real controller server over loopback: it takes the current routing
//! before it serves, then every push; a bad push or another policy version leaves the last
//! good routing; without the controller it keeps its weights and reports how stale they are.

mod common;

use std::sync::Arc;
use std::time::Duration;

use augur_analyzer::rollout::Weights;
use augur_controller::{Api, ApiRequest, ApiResponse, ControllerHttp, Publisher, ServerMetrics};
use augur_model::fleet::RolloutRouting;
use augur_policies::PolicySet;
use augur_proxy::follow::Follower;
use augur_proxy::metrics::Metrics;
use augur_proxy::policy_store::PolicyStore;
use augur_proxy::weights::RolloutWeights;

fn policy() -> String {
    common::policy_with_steps("  - setWeight: 20\n  - setWeight: 100\n")
}

struct NoApi(Arc<PolicySet>);

impl Api for NoApi {
    fn policies(&self) -> Arc<PolicySet> {
        Arc::clone(&self.0)
    }
    fn handle(&self, _: ApiRequest<'_>) -> ApiResponse {
        ApiResponse {
            status: http::StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
}

fn routing(hash: &str, stable: u8, canary: u8) -> RolloutRouting {
    RolloutRouting {
        policy: "default/m".into(),
        policy_hash: hash.into(),
        stable: "m/v1".into(),
        canary: "m/v2".into(),
        stable_weight: stable,
        canary_weight: canary,
        phase: "progressing".into(),
        step: Some(1),
        changed_at_ms: 1,
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_follows_pushes_keeps_the_last_good_state_and_reports_staleness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy()).expect("policy");
    let metrics =
        Arc::new(Metrics::new(augur_proxy::identity::Workload::unknown()).expect("metrics"));
    let store = Arc::new(PolicyStore::open(vec![file], Arc::clone(&metrics)).expect("store"));
    let snapshot = store.snapshot();
    let set = Arc::new(snapshot.loaded.set.clone());
    let hash = augur_policies::fingerprint::rollout_fingerprint(&set, &set.canary_policies[0]);

    let publisher = Publisher::new("controller-1");
    publisher.publish(vec![routing(&hash, 80, 20)]);
    let registry = prometheus::Registry::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(augur_controller::serve(
        listener,
        Arc::new(ControllerHttp {
            publisher: Arc::clone(&publisher),
            token: None,
            api: Arc::new(NoApi(Arc::clone(&set))),
            metrics: ServerMetrics::register(&registry).expect("metrics"),
            heartbeat: Duration::from_millis(200),
        }),
        stopped,
    ));

    let weights = Arc::new(RolloutWeights::default());
    let follower = Arc::new(Follower::new(
        addr.to_string(),
        None,
        "pod-1".into(),
        Arc::clone(&store),
        Arc::clone(&weights),
        metrics.follow.clone(),
    ));
    // Before serving: the current state.
    follower
        .initial_sync(Duration::from_secs(5))
        .await
        .expect("initial state");
    assert_eq!(
        weights.get("default/m"),
        Some(Weights {
            stable: 80,
            canary: 20
        })
    );

    let (_keep, follower_stop) = tokio::sync::watch::channel(false);
    let running = Arc::clone(&follower);
    tokio::spawn(async move { running.run(follower_stop).await });
    until("the watch stream", || follower.view().connected).await;
    assert_eq!(publisher.subscribers()[0].node, "pod-1");

    // A push.
    publisher.publish(vec![routing(&hash, 50, 50)]);
    until("the pushed weights", || {
        weights.get("default/m").is_some_and(|w| w.canary == 50)
    })
    .await;

    // Weights that do not add up: refused, the last good state stays.
    publisher.publish(vec![routing(&hash, 60, 50)]);
    until("the refusal", || follower.view().last_error.is_some()).await;
    assert_eq!(
        weights.get("default/m"),
        Some(Weights {
            stable: 50,
            canary: 50
        })
    );

    // Another version of the policy: held back and reported.
    publisher.publish(vec![routing("another-version", 0, 100)]);
    until("the mismatch", || !follower.view().mismatched.is_empty()).await;
    assert_eq!(
        weights.get("default/m"),
        Some(Weights {
            stable: 50,
            canary: 50
        })
    );
    assert!(publisher.subscribers()[0].lagging.contains_key("default/m"));

    // The controller goes away: the weights stay, staleness grows.
    stop.send_replace(true);
    server.abort();
    until("the lost stream", || !follower.view().connected).await;
    until("staleness", || {
        follower.view().stale_seconds.is_some_and(|s| s >= 1.0)
    })
    .await;
    assert_eq!(
        weights.get("default/m"),
        Some(Weights {
            stable: 50,
            canary: 50
        })
    );
}

/// A controller gone wrong, which the real one cannot be made to be: it serves a good state,
/// then on the watch stream a good push, a line that is not JSON, a state of another protocol
/// version, and finally a line longer than any push may be.
async fn faulty_controller(good: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let good = good.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                if head.starts_with("GET /v1/fleet/state") {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{good}",
                        good.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    return;
                }
                let other_protocol = good.replace("\"protocol\":1", "\"protocol\":99");
                let oversized = "x".repeat(augur_proxy::follow::MAX_PUSH_BYTES + 1);
                let mut body = Vec::new();
                for line in [
                    good.as_str(),
                    "not json",
                    other_protocol.as_str(),
                    oversized.as_str(),
                ] {
                    let chunk = format!("{line}\n");
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(chunk.as_bytes());
                    body.extend_from_slice(b"\r\n");
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                // Hold the stream open: the sidecar must end it itself.
                let _ = stream.read(&mut byte).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_foreign_pushes_leave_the_last_good_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy()).expect("policy");
    let metrics =
        Arc::new(Metrics::new(augur_proxy::identity::Workload::unknown()).expect("metrics"));
    let store = Arc::new(PolicyStore::open(vec![file], Arc::clone(&metrics)).expect("store"));
    let snapshot = store.snapshot();
    let set = &snapshot.loaded.set;
    let hash = augur_policies::fingerprint::rollout_fingerprint(set, &set.canary_policies[0]);
    let good = serde_json::to_string(&augur_model::fleet::FleetState {
        protocol: augur_model::fleet::FLEET_PROTOCOL,
        version: 1,
        controller: "faulty".into(),
        decided_at_ms: 1,
        published_at_ms: 1,
        rollouts: vec![routing(&hash, 70, 30)],
    })
    .expect("state JSON");
    let addr = faulty_controller(good).await;
    let weights = Arc::new(RolloutWeights::default());
    let follower = Arc::new(Follower::new(
        addr.to_string(),
        None,
        "pod-1".into(),
        Arc::clone(&store),
        Arc::clone(&weights),
        metrics.follow.clone(),
    ));
    follower
        .initial_sync(Duration::from_secs(5))
        .await
        .expect("initial state");
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let running = Arc::clone(&follower);
    tokio::spawn(async move { running.run(stop).await });
    let errors = |reason: &str| {
        let text = String::from_utf8(metrics.render()).expect("metrics text");
        let prefix = format!("augur_controller_push_errors_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    until("every bad push counted", || {
        errors("malformed") >= 1.0 && errors("protocol") >= 1.0 && errors("oversized") >= 1.0
    })
    .await;
    assert_eq!(
        weights.get("default/m"),
        Some(Weights {
            stable: 70,
            canary: 30
        }),
        "the last good state stays"
    );
    assert!(
        follower.view().summary().contains("last error"),
        "/ready says what went wrong: {}",
        follower.view().summary()
    );
}
