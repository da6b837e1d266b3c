//! Sends queued mirror copies and records what the shadow destination answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use augur_model::{Arm, Sample};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{MirrorConfig, MirrorJob};
use crate::metrics::istio::{Destination, Reporter, RequestRecord};
use crate::metrics::Metrics;
use crate::response_flag::ResponseFlag;
use crate::sample::{self, RoutedSample, SampleSink, MAX_PREDICTION_BODY};

/// Mirror requests in flight at once.
const MAX_IN_FLIGHT: usize = 64;
/// How long a mirror may take before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// The background service that sends mirror copies.
pub struct MirrorService {
    jobs: Mutex<Option<mpsc::Receiver<MirrorJob>>>,
    config: MirrorConfig,
    metrics: Arc<Metrics>,
    samples: SampleSink,
}

impl MirrorService {
    /// A service draining `jobs`.
    pub fn new(
        jobs: mpsc::Receiver<MirrorJob>,
        config: MirrorConfig,
        metrics: Arc<Metrics>,
        samples: SampleSink,
    ) -> Self {
        Self {
            jobs: Mutex::new(Some(jobs)),
            config,
            metrics,
            samples,
        }
    }
}

#[async_trait]
impl BackgroundService for MirrorService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut jobs) = self.jobs.lock().await.take() else {
            return;
        };
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let pool = Arc::new(Pool::default());
        loop {
            let job = tokio::select! {
                job = jobs.recv() => match job { Some(j) => j, None => break },
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (metrics, samples, suffix, pool) = (
                Arc::clone(&self.metrics),
                self.samples.clone(),
                self.config.host_suffix.clone(),
                Arc::clone(&pool),
            );
            tokio::spawn(async move {
                send(job, suffix.as_deref(), &metrics, &samples, &pool).await;
                drop(permit);
            });
        }
    }
}

/// Kept-alive HTTP/1.1 connections to mirror endpoints, reused as Envoy reuses its cluster
/// connections: a new TCP connection (and a TIME_WAIT socket) per copy cost the mirror more
/// than the copy itself (BENCHMARKS.md, scenario 3).
#[derive(Default)]
struct Pool {
    idle: std::sync::Mutex<HashMap<SocketAddr, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Pool {
    /// An idle connection to `addr` that is still open, if any.
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        while let Some(sender) = list.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed (at most [`MAX_IN_FLIGHT`] per endpoint).
    fn put(&self, addr: SocketAddr, sender: SendRequest<Full<Bytes>>) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            if list.len() < MAX_IN_FLIGHT {
                list.push(sender);
            }
        }
    }
}

/// What came back from a mirror.
struct Answer {
    status: u16,
    body: Bytes,
}

async fn send(
    job: MirrorJob,
    suffix: Option<&str>,
    metrics: &Metrics,
    samples: &SampleSink,
    pool: &Pool,
) {
    let start = crate::clock::now();
    let picked = job.cluster.pick(None);
    let endpoint = picked.as_ref().map(|(addr, _)| *addr);
    let result = match endpoint {
        Some(addr) => {
            let timeout = job.cluster.connect_timeout.max(MIRROR_TIMEOUT);
            tokio::time::timeout(timeout, exchange(addr, &job, suffix, pool))
                .await
                .unwrap_or(Err("timeout"))
        }
        None => Err("no endpoint"),
    };
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let (status, flags, body) = match &result {
        Ok(a) => (a.status, ResponseFlag::None, Some(&a.body)),
        Err("timeout") => (0, ResponseFlag::UpstreamRequestTimeout, None),
        Err("no endpoint") => (0, ResponseFlag::NoHealthyUpstream, None),
        Err(_) => (0, ResponseFlag::UpstreamConnectionFailure, None),
    };
    let outcome = if result.is_ok() { "answered" } else { "failed" };
    metrics.mirror_requests.with_label_values(&[outcome]).inc();
    metrics.istio.record(&RequestRecord {
        reporter: Reporter::Source,
        destination: Destination::Service(job.cluster.metric_labels()),
        status,
        flags,
        duration_ms: latency_ms,
        request_bytes: job.body.len() as u64,
        response_bytes: body.map_or(0, |b| b.len() as u64),
    });
    let (score, label) = match (&job.prediction, body) {
        (Some(how), Some(b)) if (200..300).contains(&status) => sample::read_prediction(b, how),
        _ => (None, None),
    };
    let sample = Sample {
        t: sample::now(),
        request_id: job.request_id,
        route: Some(job.route),
        arm: Arm::Mirror,
        upstream: endpoint.map(|e| e.to_string()),
        status,
        response_flags: flags.is_set().then(|| flags.as_str().to_owned()),
        latency_ms,
        bytes: body.map(|b| b.len() as u64),
        score,
        label,
        truth: None,
    };
    samples.record(
        RoutedSample {
            policy: job.policy,
            sample,
        },
        metrics,
    );
}

async fn exchange(
    addr: SocketAddr,
    job: &MirrorJob,
    suffix: Option<&str>,
    pool: &Pool,
) -> Result<Answer, &'static str> {
    let (response, mut sender) = match pool.take(addr) {
        // A kept-alive connection the endpoint may have closed meanwhile: on failure the copy
        // goes once more over a new connection.
        Some(mut sender) => match sender.send_request(mirror_request(job, suffix)?).await {
            Ok(response) => (response, sender),
            Err(_) => {
                let mut sender = connect(addr).await?;
                let response = sender
                    .send_request(mirror_request(job, suffix)?)
                    .await
                    .map_err(|_| "send")?;
                (response, sender)
            }
        },
        None => {
            let mut sender = connect(addr).await?;
            let response = sender
                .send_request(mirror_request(job, suffix)?)
                .await
                .map_err(|_| "send")?;
            (response, sender)
        }
    };
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_PREDICTION_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes());
    // Only a connection whose answer was read whole can carry the next copy.
    let body = match body {
        Ok(b) => {
            if sender.ready().await.is_ok() {
                pool.put(addr, sender);
            }
            b
        }
        Err(_) => Bytes::new(),
    };
    Ok(Answer { status, body })
}

/// A new HTTP/1.1 connection to a mirror endpoint.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, &'static str> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| "connect")?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "handshake")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The copy of the primary request: same method, path, headers and body; the host with the
/// mirror suffix when one is configured.
fn mirror_request(
    job: &MirrorJob,
    suffix: Option<&str>,
) -> Result<http::Request<Full<Bytes>>, &'static str> {
    let head = &job.head;
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http::Request::builder()
        .method(head.method.clone())
        .uri(path);
    for (name, value) in head.headers.iter() {
        if name == http::header::HOST {
            continue;
        }
        request = request.header(name, value);
    }
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| head.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = match suffix {
        Some(s) => add_suffix(host, s),
        None => host.to_owned(),
    };
    request
        .header(http::header::HOST, host)
        .body(Full::new(job.body.clone()))
        .map_err(|_| "request")
}

/// `host:port` + `-shadow` → `host-shadow:port`, as Envoy appends the suffix.
fn add_suffix(host: &str, suffix: &str) -> String {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{h}{suffix}:{port}")
        }
        _ => format!("{host}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::add_suffix;

    #[test]
    fn suffix_goes_before_the_port() {
        assert_eq!(add_suffix("httpbin:8000", "-shadow"), "httpbin-shadow:8000");
        assert_eq!(add_suffix("httpbin", "-shadow"), "httpbin-shadow");
    }
}
