//! Raw serde shape of `augur.dev/v1alpha1` CanaryPolicy. The doc comments
//! here become the descriptions in `schema/canarypolicy.schema.json`.
//!
//! Unknown fields are errors for this kind; they are collected with
//! `serde_ignored` (so that all are reported) rather than with
//! `deny_unknown_fields`, which would stop at the first. The schema still
//! says `additionalProperties: false` so that editors flag them.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::istio::common::RawStringMatch;

/// `spec` of a CanaryPolicy.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawCanarySpec {
    /// When the rollout starts: `command` (default: it waits, with the routes at their VirtualService weights, until `augur rollout start`, so no canary traffic flows until a person or CI says so) or `immediately` (as soon as the proxy or controller loads the policy). A started rollout resumes from its saved state after a restart either way.
    pub(crate) start_on: Option<RawStartOn>,
    /// Which VirtualService routes this policy drives (their destination weights are rewritten at each step; a shadow-only policy only mirrors them to the shadow and never changes a weight).
    pub(crate) traffic_routing: Option<RawTrafficRouting>,
    /// The current model's destination; must appear in every driven route.
    pub(crate) stable: Option<RawRef>,
    /// The new model's destination; must appear in every driven route. Leave it out, with `steps` and `blueGreen`, for a shadow-only policy.
    pub(crate) canary: Option<RawRef>,
    /// Canary steps, run in order (use either `steps` or `blueGreen`; neither in a shadow-only policy).
    pub(crate) steps: Option<Vec<RawStep>>,
    /// Blue/green strategy (use either `steps` or `blueGreen`).
    pub(crate) blue_green: Option<RawBlueGreen>,
    /// How stable and canary are compared.
    pub(crate) analysis: Option<RawAnalysis>,
    /// Conditions that abort the rollout at once, outside the analysis schedule.
    pub(crate) rollback: Option<RawRollback>,
    /// Where to find the model's prediction in response bodies.
    pub(crate) prediction: Option<RawPrediction>,
    /// An in-process shadow model that receives mirrored requests. Without `canary`, `steps` and `blueGreen` the policy is shadow-only: stable serves every request, `mirrorPercentage` of them are also scored by the shadow, no weight ever changes, and stable's agreement with the shadow is reported.
    pub(crate) shadow: Option<RawShadow>,
    /// Ground-truth labels posted to the admin port.
    pub(crate) labels: Option<RawLabels>,
}

/// `startOn`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawStartOn {
    /// Wait for `augur rollout start` (the default).
    Command,
    /// Start as soon as the policy is loaded.
    Immediately,
}

/// `trafficRouting`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawTrafficRouting {
    /// The VirtualService whose routes are driven (same namespace as the policy).
    pub(crate) virtual_service: Option<RawVsRef>,
    /// Where the split happens: `outbound` (default: in the clients' sidecars, as Istio does) or `inbound` (in the sidecars of the stable model pods: stable is the local app, canary the canary's Service; clients need no sidecar).
    pub(crate) sidecar: Option<RawSidecar>,
}

/// `trafficRouting.sidecar`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawSidecar {
    /// The clients' sidecars split (Istio's topology).
    Outbound,
    /// The stable model pods' sidecars split their inbound traffic.
    Inbound,
}

/// `trafficRouting.virtualService`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawVsRef {
    /// VirtualService `metadata.name`.
    pub(crate) name: Option<String>,
    /// Names of the HTTP routes (`http[].name`) to drive; each must contain the stable and canary destinations.
    pub(crate) routes: Option<Vec<String>>,
}

/// A destination reference: host plus subset.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawRef {
    /// Service host as written in the VirtualService (short name or FQDN).
    pub(crate) host: Option<String>,
    /// DestinationRule subset.
    pub(crate) subset: Option<String>,
}

/// One step: exactly one of the fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawStep {
    /// Send this percentage (0..=100) of the driven routes' traffic to the canary.
    pub(crate) set_weight: Option<i64>,
    /// Wait; without `duration`, wait until promoted by an operator.
    pub(crate) pause: Option<RawPause>,
    /// Run the analysis now; fields given here override `spec.analysis`.
    pub(crate) analysis: Option<RawAnalysisOverride>,
    /// Add a route that sends requests matching headers to the canary.
    pub(crate) set_header_route: Option<RawHeaderRoute>,
    /// Add a mirror of a share of the traffic to the canary.
    pub(crate) set_mirror_route: Option<RawMirrorRoute>,
}

/// `pause`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPause {
    /// How long to wait (Go duration, e.g. `10m`); absent = until promoted.
    pub(crate) duration: Option<String>,
}

/// Overrides of `spec.analysis` for one step.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawAnalysisOverride {
    /// Time between evaluations (Go duration).
    pub(crate) interval: Option<String>,
    /// Samples needed per arm before a verdict.
    pub(crate) min_samples: Option<u32>,
    /// Significance level, in (0, 1).
    pub(crate) alpha: Option<f64>,
    /// Statistical method.
    pub(crate) method: Option<RawMethod>,
    /// How long this gate waits for every metric to be shown within its allowance (Go duration).
    pub(crate) max_duration: Option<String>,
    /// `blueGreen.postPromotionAnalysis` only: how long to watch after the switch (Go duration, e.g. `5m`). A failure (or a rollback trigger) within it switches back; at its end the rollout completes if the last look shows every metric within its allowance, else `onInconclusive` applies at once. Without it the analysis completes the rollout at the first look that shows that.
    pub(crate) duration: Option<String>,
}

/// `setHeaderRoute`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawHeaderRoute {
    /// Name of the added route.
    pub(crate) name: Option<String>,
    /// Header conditions, all of which must match; without any, the step removes the route of
    /// this name (as in Argo Rollouts).
    #[serde(rename = "match")]
    pub(crate) matches: Option<Vec<RawHeaderMatch>>,
}

/// One header condition of `setHeaderRoute`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawHeaderMatch {
    /// Header name (case-insensitive).
    pub(crate) header_name: Option<String>,
    /// How the value is matched: `{exact: ...}`, `{prefix: ...}` or `{regex: ...}`.
    pub(crate) header_value: Option<RawStringMatch>,
}

/// `setMirrorRoute`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawMirrorRoute {
    /// Name of the mirror route.
    pub(crate) name: Option<String>,
    /// Percentage (0..=100) of requests mirrored to the canary.
    pub(crate) percentage: Option<f64>,
}

/// `blueGreen`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawBlueGreen {
    /// Route name (in the driven VirtualService) that always sends to the canary, for testing before promotion.
    pub(crate) preview_route: Option<String>,
    /// Promote without an operator once pre-promotion analysis passes (default false).
    pub(crate) auto_promote: Option<bool>,
    /// Analysis run against the preview before switching (overrides `spec.analysis`).
    pub(crate) pre_promotion_analysis: Option<RawAnalysisOverride>,
    /// Analysis run after switching; failure switches back (overrides `spec.analysis`).
    pub(crate) post_promotion_analysis: Option<RawAnalysisOverride>,
}

/// `analysis`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawAnalysis {
    /// Time between evaluations (Go duration, default 1m).
    pub(crate) interval: Option<String>,
    /// Samples needed per arm before a verdict (default 100).
    pub(crate) min_samples: Option<u32>,
    /// Significance level, in (0, 1) (default 0.05).
    pub(crate) alpha: Option<f64>,
    /// Statistical method (default sequential).
    pub(crate) method: Option<RawMethod>,
    /// Failed evaluations (a metric shown beyond its allowance) tolerated before rollback (default 1).
    pub(crate) failure_limit: Option<u32>,
    /// How long an analysis gate waits for every metric to be shown within its allowance (Go duration, default 1h); reaching it is one inconclusive measurement.
    pub(crate) max_duration: Option<String>,
    /// The analysis does not fail a rate metric on a burst shorter than this: the worst such window is left out of a Fail (Go duration, default 2m; 0s turns it off). Bursts are the rollback triggers' business.
    pub(crate) burst_window: Option<String>,
    /// Inconclusive measurements (gate periods of maxDuration without a decision) tolerated before onInconclusive applies; each waits another maxDuration (default 0).
    pub(crate) inconclusive_limit: Option<u32>,
    /// Consecutive evaluations at which a metric received no new sample in one arm (no traffic; with `source: prometheus`, an answer with no data) tolerated before onNoData applies (default 4). A Prometheus that does not answer holds the rollout without counting here.
    pub(crate) consecutive_error_limit: Option<u32>,
    /// What to do when a metric receives no new data past consecutiveErrorLimit (default hold); continue also lets a gate pass over a metric with too few samples.
    pub(crate) on_no_data: Option<RawOutcomeAction>,
    /// What an analysis gate does when it stays inconclusive past inconclusiveLimit (default hold: pause for a human).
    pub(crate) on_inconclusive: Option<RawOutcomeAction>,
    /// Where samples come from (default embedded).
    pub(crate) source: Option<RawSource>,
    /// Metrics compared between stable and canary.
    pub(crate) metrics: Option<Vec<RawMetric>>,
    /// Kayenta-style scoring: the verdict is the weighted share of passing metrics, by group.
    pub(crate) scoring: Option<RawScoring>,
}

/// `analysis.scoring`, as in Spinnaker's Kayenta canary configs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawScoring {
    /// Weight of each metric group (metrics name their group with `group`).
    pub(crate) groups: Option<std::collections::BTreeMap<String, f64>>,
    /// Score (0–100) at or above which the analysis passes.
    pub(crate) pass: Option<f64>,
    /// Score (0–100) below which it fails; between marginal and pass it is inconclusive.
    pub(crate) marginal: Option<f64>,
}

/// Statistical method.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawMethod {
    /// Sequential test, valid at every look.
    Sequential,
    /// Mann-Whitney U test.
    MannWhitney,
    /// Fixed thresholds from `allowedChange` only.
    Threshold,
}

/// Action on no data or inconclusive results.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawOutcomeAction {
    /// Stay at the current step.
    Hold,
    /// Roll back.
    Rollback,
    /// Go on to the next step.
    Continue,
}

/// Sample source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawSource {
    /// Samples recorded by this proxy.
    Embedded,
    /// A Prometheus server.
    Prometheus(RawPrometheus),
}

/// `source.prometheus`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPrometheus {
    /// Base URL of the Prometheus HTTP API, `http://host:port[/prefix]`, e.g. `http://prometheus:9090` (plain HTTP).
    pub(crate) address: Option<String>,
    /// Extra label matchers added to every query of the sidecars' `augur_rollout_*` series, e.g. `cluster="eu-1"`.
    pub(crate) query: Option<String>,
    /// How far behind now the evidence is read, so that every scrape up to the read time has landed (Go duration, default 30s).
    pub(crate) scrape_lag: Option<String>,
}

/// One analysed metric.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawMetric {
    /// Metric name, unique in the policy.
    pub(crate) name: Option<String>,
    /// What is measured.
    pub(crate) kind: Option<RawMetricKind>,
    /// For `latency`: the quantile tested, in (0, 1), e.g. 0.95.
    pub(crate) quantile: Option<f64>,
    /// Which change is bad (default: increase for latency, errorRate, predictionDrift, calibration; decrease for accuracy, shadowAgreement).
    pub(crate) direction: Option<RawDirection>,
    /// Change tolerated before the canary fails: `absolute` in percentage points for rates and as a duration for latency, or `relative` as a fraction of stable.
    pub(crate) allowed_change: Option<RawAllowedChange>,
    /// A failure of a critical metric rolls back at once.
    pub(crate) critical: Option<bool>,
    /// The Kayenta scoring group this metric counts in (with `analysis.scoring`).
    pub(crate) group: Option<String>,
}

/// Metric kinds.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawMetricKind {
    /// Response latency at `quantile`: the quantile itself is tested (a tail-only regression is seen).
    Latency,
    /// Shift of the whole latency distribution: the ratio of the arms' geometric-mean latencies.
    LatencyShift,
    /// Share of 5xx and failed requests.
    ErrorRate,
    /// Share of predictions matching ground-truth labels.
    Accuracy,
    /// Share of requests where the shadow model agrees with the serving one.
    ShadowAgreement,
    /// Shift of the prediction score distribution.
    PredictionDrift,
    /// Calibration error of the scores.
    Calibration,
}

/// Which change is bad.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawDirection {
    /// An increase is bad.
    Increase,
    /// A decrease is bad.
    Decrease,
}

/// Tolerated change: exactly one field.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawAllowedChange {
    /// In the metric's unit: percentage points for rates (`1` = 1 point), a Go duration for latency (`50ms`), the score's unit for calibration and predictionDrift.
    pub(crate) absolute: Option<RawAmount>,
    /// As a fraction of the stable value (0.1 = 10%).
    pub(crate) relative: Option<f64>,
}

/// `rollback`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawRollback {
    /// Triggers, checked continuously.
    pub(crate) triggers: Option<Vec<RawTrigger>>,
}

/// A rollback trigger.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    /// Trigger name (shown in the audit log).
    pub(crate) name: Option<String>,
    /// The canary metric watched.
    pub(crate) metric: Option<RawTriggerMetric>,
    /// When it fires: exactly one of `above`, `dropBy`, `increaseBy`; it fires when a confidence bound over the window shows the condition.
    pub(crate) condition: Option<RawCondition>,
    /// How long the condition must be shown to hold (Go duration).
    pub(crate) window: Option<String>,
    /// What happens when it fires.
    pub(crate) action: Option<RawTriggerAction>,
    /// False-firing budget: the probability per hour that the trigger fires on a canary that does not meet its condition, in (0, 1) (default 0.01).
    pub(crate) alpha: Option<f64>,
}

/// Trigger metrics.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawTriggerMetric {
    /// Canary error rate, percent.
    ErrorRate,
    /// Canary accuracy, percent.
    Accuracy,
    /// Canary median latency.
    LatencyP50,
    /// Canary 95th percentile latency.
    LatencyP95,
    /// Canary 99th percentile latency.
    LatencyP99,
    /// Shadow agreement, percent.
    ShadowAgreement,
}

/// Trigger condition: exactly one field. Rates in percent (`above: 10` = 10%), latencies as durations (`increaseBy: 500ms`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawCondition {
    /// Fires when the canary value is above this.
    pub(crate) above: Option<RawAmount>,
    /// Fires when the canary is this much below stable.
    pub(crate) drop_by: Option<RawAmount>,
    /// Fires when the canary is this much above stable.
    pub(crate) increase_by: Option<RawAmount>,
}

/// A number (percentage points for rates) or a Go duration string (latency).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawAmount {
    /// Percentage points.
    Number(f64),
    /// Go duration such as `500ms`.
    Duration(String),
}

/// Trigger action.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawTriggerAction {
    /// All traffic back to stable at once.
    Immediate,
    /// Halve the canary weight for one trigger window, then restore it only if the data shows the condition cleared (at most once per rollout), else roll back fully.
    Staged,
    /// Only stop sending to the canary; mirrors and shadow continue.
    CanaryOnly,
}

/// `prediction`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPrediction {
    /// JSON pointer to the score in the response body, e.g. `/confidence`.
    pub(crate) score_pointer: Option<String>,
    /// JSON pointer to the predicted label, e.g. `/prediction`.
    pub(crate) label_pointer: Option<String>,
    /// The label counted as positive, e.g. `PNEUMONIA`.
    pub(crate) positive_label: Option<String>,
}

/// `shadow`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawShadow {
    /// Path of the ONNX model file.
    pub(crate) model: Option<String>,
    /// Percentage (0..=100) of requests sent to the shadow model.
    pub(crate) mirror_percentage: Option<f64>,
    /// How request images become the model's input tensor.
    pub(crate) preprocessing: Option<RawPreprocessing>,
    /// Worker threads, queue and micro-batching of the shadow model.
    pub(crate) runtime: Option<RawShadowRuntime>,
}

/// `shadow.runtime`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawShadowRuntime {
    /// Worker threads, each owning an ONNX Runtime session (default 1).
    pub(crate) workers: Option<u32>,
    /// Mirrored images that may wait for a worker; more are dropped and counted (default 64).
    pub(crate) queue_capacity: Option<u32>,
    /// Largest micro-batch when the model's batch dimension is dynamic (default 8).
    pub(crate) max_batch: Option<u32>,
    /// How long a worker waits to fill a micro-batch, as a duration such as `2ms` (default 2ms).
    pub(crate) max_batch_wait: Option<String>,
    /// ONNX Runtime intra-op threads per session (default 1).
    pub(crate) intra_op_threads: Option<u32>,
}

/// `shadow.preprocessing`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPreprocessing {
    /// 1 (grayscale) or 3 (RGB).
    pub(crate) channels: Option<u32>,
    /// Input width in pixels.
    pub(crate) width: Option<u32>,
    /// Input height in pixels.
    pub(crate) height: Option<u32>,
    /// Resize filter (default bilinear).
    pub(crate) resize: Option<RawResize>,
    /// Center crop to this size after resizing (`{width, height}`).
    pub(crate) crop: Option<RawCrop>,
    /// Per-channel mean subtracted (with `std`).
    pub(crate) mean: Option<Vec<f64>>,
    /// Per-channel standard deviation divided by (with `mean`).
    pub(crate) std: Option<Vec<f64>>,
    /// Scale pixel values into `[min, max]` (instead of mean/std).
    pub(crate) range: Option<Vec<f64>>,
    /// Tensor layout (default NCHW).
    pub(crate) layout: Option<RawLayout>,
}

/// Resize filter.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RawResize {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
}

/// Tensor layout.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub(crate) enum RawLayout {
    /// Batch, channels, height, width.
    #[serde(rename = "NCHW")]
    Nchw,
    /// Batch, height, width, channels.
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// Center crop size.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawCrop {
    /// Crop width in pixels.
    pub(crate) width: Option<u32>,
    /// Crop height in pixels.
    pub(crate) height: Option<u32>,
}

/// `labels`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawLabels {
    /// How long a request waits for its ground-truth label (Go duration, default 10m).
    pub(crate) ttl: Option<String>,
    /// Minimum percentage (0..=100) of requests labelled for accuracy to be judged.
    pub(crate) min_label_rate: Option<f64>,
}
