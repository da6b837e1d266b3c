//! Mirroring: fire-and-forget copies of a request to shadow destinations (VirtualService
//! `mirror`/`mirrors`) and to the embedded ONNX shadow model (CanaryPolicy `shadow`).
//!
//! A mirrored request's body is kept up to [`MirrorConfig::max_body`] while it streams to the
//! primary upstream; when it is complete, a copy goes into a bounded queue ([`MirrorQueue`]) or
//! the shadow model's own bounded queue. A full queue drops the copy and counts it: the primary
//! request never waits, and never fails because of a mirror. Unlike Envoy, augur keeps each
//! mirror's answer (status, latency, prediction) and records it as a sample with the request's id,
//! so the analyzer can compare it with what stable or canary answered.

mod sender;

use std::sync::Arc;

use augur_policies::Prediction;
use bytes::Bytes;
use pingora::http::RequestHeader;
use prometheus::IntCounterVec;
use tokio::sync::mpsc;

pub use sender::MirrorService;

use crate::route::Cluster;

/// Mirroring limits (flags of `augur proxy`).
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Largest request body mirrored; larger requests are not mirrored (and counted).
    pub max_body: usize,
    /// Copies waiting to be sent before new ones are dropped.
    pub queue: usize,
    /// Suffix appended to the Host of mirrored requests (Envoy's `-shadow`; Istio ≥ 1.28 sets
    /// none, which is the default).
    pub host_suffix: Option<String>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            max_body: 4 * 1024 * 1024,
            queue: 1024,
            host_suffix: None,
        }
    }
}

/// One request copy on its way to a shadow destination.
pub struct MirrorJob {
    /// The request as it was sent upstream (method, path, headers).
    pub head: RequestHeader,
    /// The full request body.
    pub body: Bytes,
    /// Where to send it.
    pub cluster: Arc<Cluster>,
    /// The route that mirrored it.
    pub route: String,
    /// The request id, joining the mirror's answer to the primary's.
    pub request_id: Option<String>,
    /// The CanaryPolicy whose rollout gets the mirror's sample.
    pub policy: Option<Arc<str>>,
    /// How to read the mirror's prediction.
    pub prediction: Option<Prediction>,
}

/// Why a copy was not mirrored.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    /// The queue was full.
    QueueFull,
    /// The body was larger than the mirror limit.
    BodyTooLarge,
}

impl DropReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::BodyTooLarge => "body_too_large",
        }
    }
}

/// The sending side of the mirror queue.
#[derive(Clone)]
pub struct MirrorQueue {
    tx: mpsc::Sender<MirrorJob>,
    dropped: IntCounterVec,
}

impl MirrorQueue {
    /// A queue of `capacity` jobs; the receiver goes to [`MirrorService`].
    pub fn channel(capacity: usize, dropped: IntCounterVec) -> (Self, mpsc::Receiver<MirrorJob>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, dropped }, rx)
    }

    /// Queues a copy without waiting; a full queue drops it and counts it.
    pub fn offer(&self, job: MirrorJob) {
        if self.tx.try_send(job).is_err() {
            self.drop_one(DropReason::QueueFull);
        }
    }

    /// Counts a copy that was not mirrored.
    pub fn drop_one(&self, reason: DropReason) {
        self.dropped.with_label_values(&[reason.as_str()]).inc();
    }
}
