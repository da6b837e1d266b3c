//! What following the controller costs: how long a decision takes to reach 1, 10, 100 and 1,000
//! subscribed sidecars over loopback, and the controller's memory per subscriber.
//!
//! The controller (the real server and publisher) runs in this process; the subscribers run in
//! a child process (this program again, with `--subscribers N`), each a real HTTP/1.1 watch
//! stream reading JSON lines, so the controller's resident-set growth is its own. For each
//! count, 20 decisions are published one after the other, each once every subscriber has the
//! previous one; the time from `publish` to the last subscriber's receipt is measured in the
//! child, against the decision time carried in the state. Prints one JSON object.
//!
//! Run by `bench/run.sh` (`cargo run --release -p augur-controller --example bench_fanout`).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use augur_controller::{Api, ApiRequest, ApiResponse, ControllerHttp, Publisher, ServerMetrics};
use augur_model::fleet::{FleetState, RolloutRouting};
use augur_policies::PolicySet;
use http_body_util::{BodyExt, Empty};

const DECISIONS: u64 = 20;
const COUNTS: [usize; 4] = [1, 10, 100, 1000];

struct NoApi;

impl Api for NoApi {
    fn policies(&self) -> Arc<PolicySet> {
        Arc::new(PolicySet::default())
    }
    fn handle(&self, _: ApiRequest<'_>) -> ApiResponse {
        ApiResponse {
            status: http::StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn routing(canary: u8) -> RolloutRouting {
    RolloutRouting {
        policy: "models/pneumonia".into(),
        policy_hash: "h".into(),
        stable: "pneumonia/v1".into(),
        canary: "pneumonia/v2".into(),
        stable_weight: 100 - canary,
        canary_weight: canary,
        phase: "progressing".into(),
        step: Some(1),
        // Carries the publish time in microseconds, for the subscribers' clock.
        changed_at_ms: now_us(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    }
}

/// Child mode: `n` subscribers to `addr`; prints `ready`, then for each version seen by all,
/// `version latency_us` (the last subscriber's receipt minus the publish time).
fn subscribers(addr: String, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64, u64)>();
        let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for i in 0..n {
            let (addr, tx, up) = (addr.clone(), tx.clone(), up_tx.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr)
                    .await
                    .expect("connect");
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                let req = http::Request::get(format!("/v1/fleet/watch?node=sub-{i}"))
                    .header("host", addr.as_str())
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                let mut body = sender.send_request(req).await.expect("watch").into_body();
                let _ = up.send(());
                let mut pending = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    pending.extend_from_slice(&data);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if let Ok(state) = serde_json::from_slice::<FleetState>(&line) {
                            let published = state.rollouts.first().map_or(0, |r| r.changed_at_ms);
                            let _ = tx.send((state.version, published, now_us()));
                        }
                    }
                }
            });
        }
        for _ in 0..n {
            up_rx.recv().await.expect("subscribed");
        }
        println!("ready");
        let mut seen: std::collections::HashMap<u64, (usize, u64, u64)> = Default::default();
        while let Some((version, published, at)) = rx.recv().await {
            let e = seen.entry(version).or_insert((0, published, 0));
            e.0 += 1;
            e.2 = e.2.max(at);
            if e.0 == n && version > 1 {
                println!("{version} {}", e.2.saturating_sub(e.1));
                let _ = std::io::stdout().flush();
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--subscribers") {
        subscribers(args[i + 2].clone(), args[i + 1].parse().expect("count"));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for n in COUNTS {
        let publisher = Publisher::new("bench");
        publisher.publish(vec![routing(0)]);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let registry = prometheus::Registry::new();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let http = Arc::new(ControllerHttp {
            publisher: Arc::clone(&publisher),
            token: None,
            api: Arc::new(NoApi),
            metrics: ServerMetrics::register(&registry).expect("metrics"),
            heartbeat: Duration::from_secs(1),
        });
        rt.spawn(augur_controller::serve(listener, http, stopped));
        let before = rss_kib();
        let mut child = std::process::Command::new(std::env::current_exe().expect("self"))
            .args(["--subscribers", &n.to_string(), &addr])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("subscribers");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
        // Everyone has version 1 (the state at subscription); let the server settle.
        let after = rss_kib();
        let mut latencies_us = Vec::new();
        for version in 2..=DECISIONS + 1 {
            let canary = u8::try_from(version % 100).unwrap_or(0);
            publisher.publish(vec![routing(canary)]);
            let line = lines.next().and_then(Result::ok).expect("all received");
            let mut parts = line.split(' ');
            let seen: u64 = parts.next().and_then(|v| v.parse().ok()).expect("version");
            assert_eq!(seen, version);
            latencies_us.push(
                parts
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("latency"),
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        stop.send_replace(true);
        latencies_us.sort_unstable();
        let pick = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q).round() as usize];
        results.push(serde_json::json!({
            "subscribers": n,
            "decisions": DECISIONS,
            "reach_all_ms_p50": pick(0.5) as f64 / 1000.0,
            "reach_all_ms_max": pick(1.0) as f64 / 1000.0,
            "controller_rss_kib_per_subscriber": (after.saturating_sub(before)) as f64 / n as f64,
        }));
    }
    println!("{}", serde_json::json!({"fanout": results}));
}
