//! Sends queued mirror copies and records what the shadow destination answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use augur_model::{Arm, Sample};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{MirrorConfig, MirrorJob};
use crate::metrics::istio::{Destination, Reporter, RequestRecord};
use crate::metrics::Metrics;
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
        loop {
            let job = tokio::select! {
                job = jobs.recv() => match job { Some(j) => j, None => break },
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (metrics, samples, suffix) = (
                Arc::clone(&self.metrics),
                self.samples.clone(),
                self.config.host_suffix.clone(),
            );
            tokio::spawn(async move {
                send(job, suffix.as_deref(), &metrics, &samples).await;
                drop(permit);
            });
        }
    }
}

/// What came back from a mirror.
struct Answer {
    status: u16,
    body: Bytes,
}

async fn send(job: MirrorJob, suffix: Option<&str>, metrics: &Metrics, samples: &SampleSink) {
    let start = Instant::now();
    let picked = job.cluster.pick(None);
    let endpoint = picked.as_ref().map(|(addr, _)| *addr);
    let result = match endpoint {
        Some(addr) => {
            let timeout = job.cluster.connect_timeout.max(MIRROR_TIMEOUT);
            tokio::time::timeout(timeout, exchange(addr, &job, suffix))
                .await
                .unwrap_or(Err("timeout"))
        }
        None => Err("no endpoint"),
    };
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let (status, flags, body) = match &result {
        Ok(a) => (a.status, "-", Some(&a.body)),
        Err("timeout") => (0, "UT", None),
        Err("no endpoint") => (0, "UH", None),
        Err(_) => (0, "UF", None),
    };
    let outcome = if result.is_ok() { "answered" } else { "failed" };
    metrics.mirror_requests.with_label_values(&[outcome]).inc();
    metrics.istio.record(&RequestRecord {
        reporter: Reporter::Source,
        destination: Destination::Cluster(&job.cluster),
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
        response_flags: (flags != "-").then(|| flags.to_owned()),
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
    addr: std::net::SocketAddr,
    job: &MirrorJob,
    suffix: Option<&str>,
) -> Result<Answer, &'static str> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| "connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "handshake")?;
    tokio::spawn(conn);
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
    let request = request
        .header(http::header::HOST, host)
        .body(Full::new(job.body.clone()))
        .map_err(|_| "request")?;
    let response = sender.send_request(request).await.map_err(|_| "send")?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_PREDICTION_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Answer { status, body })
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
