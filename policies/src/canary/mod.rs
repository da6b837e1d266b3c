//! `augur.dev/v1alpha1` CanaryPolicy: which VirtualService routes a rollout
//! drives, the stable and canary destinations, the steps (or blue/green),
//! the analysis, rollback triggers, prediction parsing and the shadow model.
//!
//! Units: rates (error rate, accuracy, agreement) are percentages 0..=100;
//! latencies are durations.

use std::time::Duration;

pub use augur_model::metric::{Direction, MetricKind, TriggerMetric};
use serde::Serialize;

use crate::istio::common::{ObjectMeta, Percent, StringMatch};

pub use source::PrometheusAddress;

mod convert;
pub(crate) mod raw;
mod source;
pub(crate) mod spelling;
mod triggers;

/// A validated CanaryPolicy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryPolicy {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The driven VirtualService and routes.
    pub traffic_routing: TrafficRouting,
    /// Current model.
    pub stable: DestinationRef,
    /// New model; `None` for a shadow-only policy ([`Strategy::ShadowOnly`]).
    pub canary: Option<DestinationRef>,
    /// When the rollout starts.
    pub start_on: StartOn,
    /// Steps, blue/green, or shadow-only.
    pub strategy: Strategy,
    /// Base analysis settings (steps may override).
    pub analysis: Option<Analysis>,
    /// Rollback triggers.
    pub rollback_triggers: Vec<RollbackTrigger>,
    /// Prediction extraction.
    pub prediction: Option<Prediction>,
    /// Shadow model.
    pub shadow: Option<Shadow>,
    /// Ground-truth label handling.
    pub labels: Labels,
}

impl CanaryPolicy {
    /// Whether the policy only scores mirrored requests in its shadow model: no canary, no
    /// steps, and no route weight is ever changed.
    pub fn is_shadow_only(&self) -> bool {
        matches!(self.strategy, Strategy::ShadowOnly)
    }
}

/// A CanaryPolicy's key, `namespace/name`: how rollouts, weights, metrics and commands name it.
pub fn policy_key(p: &CanaryPolicy) -> String {
    format!("{}/{}", p.metadata.namespace, p.metadata.name)
}

/// Which routes are driven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficRouting {
    /// VirtualService name (same namespace as the policy).
    pub virtual_service: String,
    /// Route names inside it.
    pub routes: Vec<String>,
    /// Which sidecars split the traffic.
    pub sidecar: Sidecar,
}

/// Which sidecars split a rollout's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Sidecar {
    /// The clients' sidecars, on the requests they send (Istio's topology).
    #[default]
    Outbound,
    /// The stable model pods' sidecars, on the requests they receive: stable is the local app,
    /// the canary its own Service. Clients need no sidecar.
    Inbound,
}

/// When a CanaryPolicy's rollout starts (`spec.startOn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StartOn {
    /// On `augur rollout start` (the default, [`crate::defaults::START_ON`]): no canary
    /// traffic until a person or CI says start.
    Command,
    /// As soon as the proxy or controller loads the policy.
    Immediately,
}

/// A host and subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationRef {
    /// Host as written.
    pub host: String,
    /// Subset.
    pub subset: Option<String>,
}

/// How the rollout proceeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Strategy {
    /// Canary steps.
    Steps(Vec<RolloutStep>),
    /// Blue/green.
    BlueGreen(Box<BlueGreen>),
    /// No canary and no steps: the shadow model scores `shadow.mirrorPercentage` of the routes'
    /// requests, stable serves them all, and the routes' weights stay as written.
    ShadowOnly,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RolloutStep {
    /// Set the canary weight to this percentage.
    SetWeight(u32),
    /// Wait; `None` = until promoted.
    Pause {
        /// How long.
        duration: Option<Duration>,
    },
    /// Run the analysis (overrides already applied).
    Analysis(Analysis),
    /// Route matching requests to the canary.
    SetHeaderRoute(HeaderRoute),
    /// Mirror a share of traffic to the canary.
    SetMirrorRoute(MirrorRoute),
}

/// `setHeaderRoute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderRoute {
    /// Route name.
    pub name: String,
    /// Lowercase header name → value match; all must hold.
    pub matches: Vec<(String, StringMatch)>,
}

/// `setMirrorRoute`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorRoute {
    /// Route name.
    pub name: String,
    /// Share mirrored.
    pub percentage: Percent,
}

/// Blue/green strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueGreen {
    /// Route that always sends to the canary.
    pub preview_route: Option<String>,
    /// Promote automatically after pre-promotion analysis.
    pub auto_promote: bool,
    /// Analysis before switching.
    pub pre_promotion_analysis: Option<Analysis>,
    /// Analysis after switching.
    pub post_promotion_analysis: Option<Analysis>,
    /// How long the post-promotion analysis watches after the switch (`duration`); `None`:
    /// it completes the rollout at its first passing look.
    pub post_promotion_duration: Option<Duration>,
}

/// Analysis settings (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Time between evaluations.
    pub interval: Duration,
    /// Samples per arm before a verdict.
    pub min_samples: u32,
    /// Significance level in (0, 1).
    pub alpha: f64,
    /// Statistical method.
    pub method: Method,
    /// Failed evaluations before rollback.
    pub failure_limit: u32,
    /// How long a gate waits for evidence (one inconclusive measurement); `None` = unbounded.
    pub max_duration: Option<Duration>,
    /// Bursts shorter than this are left out of a rate metric's Fail.
    pub burst_window: Duration,
    /// Inconclusive measurements (gate periods) tolerated.
    pub inconclusive_limit: u32,
    /// Consecutive metric errors tolerated.
    pub consecutive_error_limit: u32,
    /// Action when there is no data.
    pub on_no_data: OutcomeAction,
    /// Action past the inconclusive limit.
    pub on_inconclusive: OutcomeAction,
    /// Where samples come from.
    pub source: MetricSource,
    /// Compared metrics.
    pub metrics: Vec<Metric>,
    /// Kayenta-style scoring, when configured.
    pub scoring: Option<Scoring>,
}

/// Kayenta-style scoring: weighted share of passing metrics by group, with thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scoring {
    /// Weight of each group.
    pub groups: Vec<(String, f64)>,
    /// Pass threshold, 0–100.
    pub pass: f64,
    /// Marginal threshold, 0–100.
    pub marginal: f64,
}

/// Statistical method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// Sequential test (default).
    Sequential,
    /// Mann-Whitney U.
    MannWhitney,
    /// Thresholds only.
    Threshold,
}

/// What to do on no data / inconclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OutcomeAction {
    /// Stay.
    Hold,
    /// Roll back.
    Rollback,
    /// Proceed.
    Continue,
}

/// Sample source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MetricSource {
    /// This proxy's own samples.
    Embedded,
    /// A Prometheus server (or anything speaking its HTTP API) holding the fleet's evidence.
    Prometheus {
        /// Base URL, checked at load ([`PrometheusAddress::parse`] accepts it).
        address: String,
        /// Extra label matchers added to every query, e.g. `cluster="eu-1"`.
        query: Option<String>,
        /// How far behind now evidence is read, so that every scrape up to the read time has
        /// landed (default [`crate::defaults::PROMETHEUS_SCRAPE_LAG`]).
        scrape_lag: Duration,
    },
}

/// An analysed metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Name.
    pub name: String,
    /// What is measured.
    #[serde(serialize_with = "spelling::serialize_kind")]
    pub kind: MetricKind,
    /// Which change is bad.
    pub direction: Direction,
    /// Tolerated change; `None` = any significant change.
    pub allowed_change: Option<AllowedChange>,
    /// Roll back at once on failure.
    pub critical: bool,
    /// Kayenta scoring group.
    pub group: Option<String>,
}

/// Tolerated change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AllowedChange {
    /// In the metric's unit.
    Absolute(f64),
    /// Fraction of the stable value.
    Relative(f64),
}

/// A rollback trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackTrigger {
    /// Name.
    pub name: String,
    /// Watched metric.
    #[serde(serialize_with = "spelling::serialize_trigger_metric")]
    pub metric: TriggerMetric,
    /// When it fires.
    pub condition: TriggerCondition,
    /// How long the condition must hold.
    pub window: Duration,
    /// What happens.
    pub action: TriggerAction,
    /// False-firing probability per hour.
    pub alpha: f64,
}

/// A threshold: percentage points or a latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Amount {
    /// Percentage points.
    Percent(f64),
    /// Latency.
    Latency(Duration),
}

/// When a trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerCondition {
    /// Canary value above this.
    Above(Amount),
    /// Canary this much below stable.
    DropBy(Amount),
    /// Canary this much above stable.
    IncreaseBy(Amount),
}

/// Trigger action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerAction {
    /// All traffic to stable at once.
    Immediate,
    /// Step back down.
    Staged,
    /// Stop canary traffic only.
    CanaryOnly,
}

/// Prediction extraction from response bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// JSON pointer to the score.
    pub score_pointer: String,
    /// JSON pointer to the label.
    pub label_pointer: String,
    /// The positive label.
    pub positive_label: String,
}

/// Shadow model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shadow {
    /// ONNX model path.
    pub model: String,
    /// Share of requests scored by the shadow.
    pub mirror_percentage: Percent,
    /// Input preprocessing.
    pub preprocessing: Preprocessing,
    /// Worker threads, queue and micro-batching.
    pub runtime: ShadowRuntime,
}

/// How the shadow model runs (`shadow.runtime`); defaults in [`crate::defaults`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowRuntime {
    /// Worker threads, each owning a session.
    pub workers: u32,
    /// Images that may wait for a worker.
    pub queue_capacity: u32,
    /// Largest micro-batch.
    pub max_batch: u32,
    /// Wait to fill a micro-batch.
    pub max_batch_wait: Duration,
    /// ONNX Runtime intra-op threads per session.
    pub intra_op_threads: u32,
}

impl Default for ShadowRuntime {
    fn default() -> Self {
        Self {
            workers: crate::defaults::SHADOW_WORKERS,
            queue_capacity: crate::defaults::SHADOW_QUEUE_CAPACITY,
            max_batch: crate::defaults::SHADOW_MAX_BATCH,
            max_batch_wait: crate::defaults::SHADOW_MAX_BATCH_WAIT,
            intra_op_threads: crate::defaults::SHADOW_INTRA_OP_THREADS,
        }
    }
}

/// Image → tensor preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preprocessing {
    /// 1 or 3.
    pub channels: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Resize filter.
    pub resize: Resize,
    /// Center crop (width, height).
    pub crop: Option<(u32, u32)>,
    /// Normalisation.
    pub normalization: Normalization,
    /// Tensor layout.
    pub layout: Layout,
}

/// Resize filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resize {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
}

/// Pixel normalisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Normalization {
    /// Pixels scaled to 0..1 only.
    None,
    /// `(x - mean) / std` per channel.
    MeanStd {
        /// Means.
        mean: Vec<f64>,
        /// Standard deviations.
        std: Vec<f64>,
    },
    /// Scaled to `[min, max]`.
    Range {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
}

/// Tensor layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layout {
    /// NCHW.
    Nchw,
    /// NHWC.
    Nhwc,
}

/// Ground-truth labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Labels {
    /// Label time-to-live.
    pub ttl: Duration,
    /// Minimum labelled share for accuracy to be judged.
    pub min_label_rate: Percent,
}
