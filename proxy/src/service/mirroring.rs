//! The per-request side of mirroring: choose the copies, keep the body, hand them off.

use std::sync::Arc;

use augur_inference::ScoreInput;
use augur_model::{Arm, Sample};
use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::metrics::Metrics;
use crate::mirror::{DropReason, MirrorJob, MirrorQueue};
use crate::policy_store::ShadowHandle;
use crate::route::{percent_roll, Cluster, Route};
use crate::sample::{self, RoutedSample, SampleSink};

/// The copies one request will make, and its body while it streams.
pub(super) struct MirrorPlan {
    head: RequestHeader,
    body: Vec<u8>,
    targets: Vec<Arc<Cluster>>,
    shadow: Option<Arc<ShadowHandle>>,
    route: Arc<Route>,
    rollout: Option<Arc<str>>,
    request_id: Option<String>,
}

/// Rolls each mirror's and the shadow model's percentage; `None` when nothing is mirrored.
pub(super) fn plan(
    route: &Arc<Route>,
    rollout: Option<Arc<str>>,
    shadow: Option<Arc<ShadowHandle>>,
    head: &RequestHeader,
    request_id: Option<&str>,
) -> Option<Box<MirrorPlan>> {
    let targets: Vec<Arc<Cluster>> = route
        .mirrors
        .iter()
        .filter(|(_, pct)| percent_roll(*pct))
        .map(|(c, _)| Arc::clone(c))
        .collect();
    let shadow = shadow.filter(|_| route.shadow_percentage.is_some_and(percent_roll));
    if targets.is_empty() && shadow.is_none() {
        return None;
    }
    Some(Box::new(MirrorPlan {
        head: head.clone(),
        body: Vec::new(),
        targets,
        shadow,
        route: Arc::clone(route),
        rollout,
        request_id: request_id.map(str::to_owned),
    }))
}

impl MirrorPlan {
    /// Keeps a body chunk; `false` (and the copies counted as dropped) past `max_body`.
    pub(super) fn keep(&mut self, chunk: &[u8], max_body: usize, queue: &MirrorQueue) -> bool {
        if self.body.len() + chunk.len() > max_body {
            for _ in 0..self.copies() {
                queue.drop_one(DropReason::BodyTooLarge);
            }
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    fn copies(&self) -> usize {
        self.targets.len() + usize::from(self.shadow.is_some())
    }

    /// Hands the copies to the mirror queue and the shadow model, without waiting.
    pub(super) fn dispatch(
        self,
        queue: &MirrorQueue,
        samples: &SampleSink,
        metrics: &Arc<Metrics>,
    ) {
        let body = Bytes::from(self.body);
        let policy = self.rollout.clone();
        for cluster in self.targets {
            queue.offer(MirrorJob {
                head: self.head.clone(),
                body: body.clone(),
                cluster,
                route: self.route.name.clone(),
                request_id: self.request_id.clone(),
                policy: policy.clone(),
                prediction: self.route.prediction.clone(),
            });
        }
        let Some(shadow) = self.shadow else { return };
        let content_type = self
            .head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let (samples, metrics, route) = (
            samples.clone(),
            Arc::clone(metrics),
            self.route.name.clone(),
        );
        let request_id = self.request_id;
        let submitted =
            shadow
                .model
                .try_submit(ScoreInput::encoded(body, content_type), move |result| {
                    let Ok(score) = result else { return };
                    let sample = Sample {
                        t: sample::now(),
                        request_id,
                        route: Some(route),
                        arm: Arm::Shadow,
                        upstream: None,
                        status: 200,
                        response_flags: None,
                        latency_ms: score.latency.as_secs_f64() * 1000.0,
                        bytes: None,
                        score: Some(f64::from(score.score)),
                        label: Some(score.label),
                        truth: None,
                    };
                    samples.record(RoutedSample { policy, sample }, &metrics);
                });
        if submitted.is_err() {
            queue.drop_one(DropReason::QueueFull);
        }
    }
}
