//! The traffic generator: posts the X-rays through the proxy as a FastAPI client uploads a file
//! (`multipart/form-data`, field `file`), and, for a share of the answered requests, posts the
//! true label to the admin port's `/labels` a little later (delayed ground truth).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use augur_rollout::status::LabelsReply;
use serde_json::Value;

use super::assets::Xray;
use super::client::Conn;
use crate::cmd::admin_client;

/// Concurrent clients.
const CLIENTS: usize = 3;
/// How long after the answer its true label is posted.
pub(super) const LABEL_DELAY: Duration = Duration::from_secs(2);
/// Latencies kept per model version for the live view.
const RECENT: Duration = Duration::from_secs(30);
/// The multipart boundary.
const BOUNDARY: &str = "augur-demo-7d1f3a";

/// What the clients saw, per `model_version` of the answers.
#[derive(Debug, Default)]
pub(super) struct VersionStats {
    /// Answers from this version.
    pub(super) requests: u64,
    /// Recent latencies (ms), as the client measured them.
    recent: VecDeque<(Instant, f64)>,
}

impl VersionStats {
    /// The `q` quantile of the recent latencies.
    pub(super) fn quantile(&self, q: f64) -> Option<f64> {
        let mut v: Vec<f64> = self.recent.iter().map(|(_, l)| *l).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v.get(i).copied()
    }
}

/// The generator's counters.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Requests sent.
    pub(super) sent: u64,
    /// Requests that failed (5xx, or no answer).
    pub(super) failed: u64,
    /// Per `model_version`.
    pub(super) versions: BTreeMap<String, VersionStats>,
    /// Labels posted.
    pub(super) labels_sent: u64,
    /// Labels the proxy matched to a prediction.
    pub(super) labels_matched: u64,
}

struct Shared {
    stop: AtomicBool,
    stats: Mutex<Stats>,
    next_slot: Mutex<Instant>,
    labels: Mutex<VecDeque<(Instant, String, &'static str)>>,
    counter: AtomicU64,
}

/// The running generator; stops when dropped.
pub(super) struct Traffic {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Traffic {
    /// Starts posting `xrays` (in turn) to `proxies` (each client to one, in turn) at about
    /// `rate` per second, labelling a `label_fraction` share of the answers through `admin`.
    pub(super) fn start(
        xrays: Vec<Xray>,
        proxies: &[SocketAddr],
        admin: SocketAddr,
        rate: f64,
        label_fraction: f64,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats: Mutex::new(Stats::default()),
            next_slot: Mutex::new(augur_proxy::clock::now()),
            labels: Mutex::new(VecDeque::new()),
            counter: AtomicU64::new(0),
        });
        let bodies: Arc<Vec<(Vec<u8>, &'static str)>> =
            Arc::new(xrays.iter().map(|x| (multipart(x), x.truth)).collect());
        let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
        let mut threads = Vec::new();
        anyhow::ensure!(!proxies.is_empty(), "no proxy to send traffic to");
        for i in 0..CLIENTS {
            let (shared, bodies) = (Arc::clone(&shared), Arc::clone(&bodies));
            let proxy = proxies[i % proxies.len()];
            threads.push(
                std::thread::Builder::new()
                    .name(format!("demo-client-{i}"))
                    .spawn(move || client(&shared, &bodies, proxy, gap, label_fraction))?,
            );
        }
        let labeller = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("demo-labels".to_owned())
                .spawn(move || labels(&labeller, admin))?,
        );
        Ok(Self { shared, threads })
    }

    /// Reads the counters.
    pub(super) fn with_stats<T>(&self, f: impl FnOnce(&Stats) -> T) -> T {
        f(&lock(&self.shared.stats))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The request body: the X-ray as the `file` field of a form.
fn multipart(x: &Xray) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
         Content-Type: image/jpeg\r\n\r\n",
        x.name
    )
    .into_bytes();
    body.extend_from_slice(&x.bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Whether request `n` gets its label: a steady `fraction` share.
pub(super) fn labelled(n: u64, fraction: f64) -> bool {
    let f = fraction.clamp(0.0, 1.0);
    ((n + 1) as f64 * f).floor() > (n as f64 * f).floor()
}

fn client(
    shared: &Shared,
    bodies: &[(Vec<u8>, &'static str)],
    proxy: SocketAddr,
    gap: Duration,
    label_fraction: f64,
) {
    let mut conn: Option<Conn> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let slot = {
            let mut next = lock(&shared.next_slot);
            let slot = (*next).max(augur_proxy::clock::now());
            *next = slot + gap;
            slot
        };
        std::thread::sleep(slot.saturating_duration_since(augur_proxy::clock::now()));
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let (body, truth) = &bodies[n as usize % bodies.len()];
        let id = uuid::Uuid::new_v4().to_string();
        let head = format!(
            "POST /predict HTTP/1.1\r\nHost: pneumonia\r\nx-request-id: {id}\r\n\
             Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        );
        let started = augur_proxy::clock::now();
        let answer = match conn.as_mut() {
            Some(c) => c.send(&head, body),
            None => Conn::open(proxy).and_then(|mut c| {
                let r = c.send(&head, body);
                conn = Some(c);
                r
            }),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut stats = lock(&shared.stats);
        stats.sent += 1;
        match answer {
            Ok((r, reusable)) => {
                if !reusable {
                    conn = None;
                }
                if r.status >= 500 {
                    stats.failed += 1;
                }
                let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                let Some(version) = json["model_version"].as_str() else {
                    continue;
                };
                let v = stats.versions.entry(version.to_owned()).or_default();
                v.requests += 1;
                let now = augur_proxy::clock::now();
                v.recent.push_back((now, latency_ms));
                while v.recent.front().is_some_and(|(t, _)| now - *t > RECENT) {
                    v.recent.pop_front();
                }
                drop(stats);
                if r.status == 200 && labelled(n, label_fraction) {
                    lock(&shared.labels).push_back((now + LABEL_DELAY, id, truth));
                }
            }
            Err(e) => {
                stats.failed += 1;
                conn = None;
                tracing::debug!(error = %e, "demo request failed");
            }
        }
    }
}

/// Posts due labels in batches every quarter second.
fn labels(shared: &Shared, admin: SocketAddr) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = augur_proxy::clock::now();
        let due: Vec<(String, &'static str)> = {
            let mut q = lock(&shared.labels);
            let mut due = Vec::new();
            while q.front().is_some_and(|(t, ..)| *t <= now) {
                if let Some((_, id, truth)) = q.pop_front() {
                    due.push((id, truth));
                }
            }
            due
        };
        if due.is_empty() {
            continue;
        }
        let batch: Vec<Value> = due
            .iter()
            .map(|(id, truth)| serde_json::json!({"request_id": id, "label": truth}))
            .collect();
        let body = serde_json::json!({ "labels": batch }).to_string();
        match admin_client::call(admin, "POST", "/labels", &body) {
            Ok((200, answer)) => {
                // A proxy matches labels itself; a controller forwards them to the sidecars,
                // which match them asynchronously (it says to how many it sent them).
                let matched =
                    serde_json::from_str::<LabelsReply>(&answer).map_or(0, |r| r.matched as u64);
                let mut stats = lock(&shared.stats);
                stats.labels_sent += due.len() as u64;
                stats.labels_matched += matched;
            }
            Ok((status, answer)) => {
                tracing::warn!(status, answer = %answer.trim(), "POST /labels refused");
            }
            Err(e) => tracing::warn!(error = %e, "POST /labels failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_share_is_labelled() {
        let n = (0..1000).filter(|&n| labelled(n, 0.6)).count();
        assert_eq!(n, 600);
        assert!((0..100).all(|n| labelled(n, 1.0)));
        assert!(!(0..100).any(|n| labelled(n, 0.0)));
    }

    #[test]
    fn the_body_is_a_form_with_one_file() {
        let x = Xray {
            name: "NORMAL-1.jpeg".to_owned(),
            bytes: vec![0xff, 0xd8, 0xff],
            truth: "NORMAL",
        };
        let body = multipart(&x);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.contains("name=\"file\"; filename=\"NORMAL-1.jpeg\""));
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
    }
}
