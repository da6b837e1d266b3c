//! The admin API's JSON as types: what `GET /rollouts`, `GET /rollouts/{name}/history`, a
//! command and `POST /labels` answer. The servers ([`crate::api`], in `augur proxy` and `augur
//! controller`) write them and their readers (`augur rollout`, `augur demo`) read them, so the
//! two sides cannot drift apart field by field.

use std::collections::BTreeMap;

use augur_analyzer::rollout::{Decision, GateRecord, MetricCounters, RolloutState, Weights};
use augur_analyzer::spec::StepSpec;
use augur_analyzer::verdict::Verdict;
use serde::{Deserialize, Serialize};

use crate::history::Point;

/// `GET /rollouts`: every rollout this process runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    /// One entry per CanaryPolicy, by `namespace/name`.
    pub rollouts: Vec<RolloutStatus>,
}

/// One rollout's state, weights, evidence and recent decisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The CanaryPolicy, `namespace/name`.
    pub name: String,
    /// The hash of the policy files it runs.
    pub policy_hash: String,
    /// The (stable, canary) pair it judges.
    pub release: String,
    /// Rollouts of earlier releases archived since this process started.
    pub archived_releases: u64,
    /// Where it is.
    pub state: RolloutState,
    /// When the current analysis gate stops waiting for evidence (Unix seconds).
    pub gate_deadline: Option<f64>,
    /// When the current timed pause ends (Unix seconds).
    pub pause_deadline: Option<f64>,
    /// When the current blue-green post-promotion watch ends (Unix seconds).
    #[serde(default)]
    pub watch_deadline: Option<f64>,
    /// The gates decided so far: what each took to open, or how it ended.
    pub gates: Vec<GateRecord>,
    /// The current step (0-based), while not ended.
    pub step: Option<usize>,
    /// The policy's steps.
    pub steps: Vec<StepSpec>,
    /// The weights it applies now.
    pub weights: Weights,
    /// The last look's verdicts.
    pub verdicts: Vec<Verdict>,
    /// Argo-style counters per metric.
    pub counters: BTreeMap<String, MetricCounters>,
    /// The share of predictions with a ground-truth label, once there are predictions.
    pub label_rate: Option<f64>,
    /// The fleet-wide evidence source, when the policy names one.
    pub source: Option<SourceStatus>,
    /// The most recent decisions, newest first.
    pub decisions: Vec<Decision>,
}

/// How far a Prometheus source has been read, and how it fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The address, or why the policy's address cannot be used.
    pub address: String,
    /// The end of the evidence read so far (Unix seconds, aligned to the window).
    pub evidence_until: f64,
    /// The window, seconds.
    pub window_s: f64,
    /// Failed reads since the last good one.
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// `GET /rollouts/{name}/history`: the dashboard's time series and every decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutHistory {
    /// The CanaryPolicy, `namespace/name`.
    pub name: String,
    /// Seconds between points.
    pub period_s: f64,
    /// The time series, oldest first.
    pub points: Vec<Point>,
    /// Every decision, oldest first.
    pub decisions: Vec<Decision>,
}

/// `POST /rollouts/{name}/{command}`: the transition the command made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The decision, as the audit log records it.
    pub decision: Decision,
}

/// `POST /labels` on a proxy: how many labels came, and how many met their prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelsReply {
    /// Labels in the body.
    pub received: usize,
    /// Labels joined to a recorded prediction.
    pub matched: usize,
}

/// `POST /labels` on a controller: the labels go on to the sidecars, which join them to their
/// predictions as they arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedLabels {
    /// Labels in the body.
    pub received: usize,
    /// Sidecars the labels were sent to.
    pub forwarded_to: usize,
}

impl RolloutStatus {
    /// Whether `name` names this rollout: its full `namespace/name` or the name alone.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.name.rsplit('/').next() == Some(name)
    }
}
