//! The admin API's JSON as types: what `GET /rollouts`, `GET /rollouts/{name}/history`, a
//! command and `POST /labels` answer. The servers ([`crate::api`], in `augur proxy` and `augur
//! controller`) write them and their readers (`augur rollout`, `augur demo`) read them, so the
//! two sides cannot drift apart field by field.

use std::collections::BTreeMap;

use augur_analyzer::rollout::{Decision, GateRecord, MetricCounters, RolloutState, Weights};
use augur_analyzer::spec::StepSpec;
use augur_analyzer::verdict::Verdict;
use serde::{Deserialize, Serialize};

use crate::agreement::Agreement;
use crate::history::Point;

/// `GET /rollouts`: every rollout this process runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    /// One entry per CanaryPolicy, by `namespace/name`.
    pub rollouts: Vec<RolloutStatus>,
}

/// One policy's rollout: its state, weights, evidence and recent decisions. A shadow-only
/// policy is listed too, with the state `shadowing`, no steps and no weights of its own.
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
    pub state: PolicyState,
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
    /// The weights it applies now; `None` for a shadow-only policy (the routes' own apply).
    pub weights: Option<Weights>,
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
    /// The shadow model and each arm's agreement with it, when the policy has one: shown
    /// whatever the canary's weight.
    #[serde(default)]
    pub shadow: Option<ShadowStatus>,
}

/// What a policy is doing: a rollout's state, or scoring in the shadow only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicyState {
    /// A rollout, in one of its states.
    Rollout(RolloutState),
    /// A shadow-only policy: `{"phase": "shadowing"}`.
    ShadowOnly(ShadowOnly),
}

/// The one state of a shadow-only policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum ShadowOnly {
    /// Scores a share of the routes' requests in the shadow model; changes nothing else.
    Shadowing,
}

impl PolicyState {
    /// The phase as the JSON names it (`progressing`, ..., `shadowing`).
    pub fn phase(&self) -> &'static str {
        match self {
            PolicyState::Rollout(state) => state.phase(),
            PolicyState::ShadowOnly(ShadowOnly::Shadowing) => "shadowing",
        }
    }

    /// The rollout's state; `None` for a shadow-only policy.
    pub fn rollout(&self) -> Option<&RolloutState> {
        match self {
            PolicyState::Rollout(state) => Some(state),
            PolicyState::ShadowOnly(_) => None,
        }
    }
}

/// A policy's shadow model and each arm's agreement with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowStatus {
    /// The model file.
    pub model: String,
    /// Percent of the routes' requests it scores.
    pub percentage: f64,
    /// Each arm's agreement with it.
    pub agreement: ArmAgreement,
    /// For a shadow-only policy: when this process started counting (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
}

/// Stable's and the canary's agreement with the shadow model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmAgreement {
    /// Stable's predictions against the shadow's.
    pub stable: Agreement,
    /// The canary's; absent for a shadow-only policy, which has no canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Agreement>,
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
    /// Seconds between points; `None` for a shadow-only policy, which keeps no series.
    pub period_s: Option<f64>,
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
