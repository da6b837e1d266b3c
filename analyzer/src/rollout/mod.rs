//! The rollout state machine: steps, background analysis, triggers, limits and manual commands.
//!
//! Contract: a [`Rollout`] is driven by three inputs — [`Rollout::observe`] (a request sample),
//! [`Rollout::record_label`] (a delayed ground-truth label) and [`Rollout::tick`] (time passes;
//! call it at least once per analysis interval) — plus [`Rollout::command`]. Every transition
//! returns a [`Decision`] (time, from, to, step, weights, actions, verdicts, reason) for the audit
//! log. The whole value is serde, so a process killed at any point resumes at the same step,
//! weight, evidence and counters from its last persisted JSON.
//!
//! Semantics (Argo Rollouts, `reference/canary-analysis.md` §2):
//! - steps: `SetWeight`, `SetHeaderRoute`, `SetMirrorRoute` apply at once; `Pause{Some(d)}`
//!   waits `d` s; `Pause{None}` pauses until promoted; `Analysis` is a gate passed at the first
//!   look where every metric passes (NoData / Inconclusive count as passing only when their
//!   action is `Continue`). After the last step the rollout is Promoted (canary 100%).
//! - the analysis runs in the background every `interval_s` from the first tick, on the
//!   cumulative evidence, in every non-terminal state but a staged rollback. While the rollout
//!   stands at an `Analysis` step that has its own spec ([`Rollout::with_gate_analysis`]: the
//!   policy's per-step `interval`, `minSamples`, `alpha`, `method`), that spec replaces the base
//!   one for the looks (cadence, verdicts, limits and the gate). Per metric: Fail
//!   counts `failed` (rollback when `> failure_limit`, at once for a critical metric);
//!   Inconclusive counts `inconclusive` (`on_inconclusive` when `> inconclusive_limit`); NoData
//!   counts `consecutive_errors`, reset by data (`on_no_data` when `> consecutive_error_limit`).
//! - triggers are checked at every tick; Immediate → weight 0 and routes removed; Staged → half
//!   the weight for one interval, then finish or restore; CanaryOnly → weight 0, mirror kept.
//! - commands: promote, promote full, abort, retry (from Aborted/RolledBack to step 0, evidence
//!   cleared), pause, resume (counters cleared; on an indefinite pause step it promotes, as the
//!   Argo CD "Resume" button).

mod machine;
mod types;

use std::collections::{BTreeMap, VecDeque};

use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

use crate::judge::{Evidence, Judge};
use crate::labels::LabelJoin;
use crate::spec::{AnalysisSpec, StepSpec, TriggerSpec};
use crate::triggers::Triggers;
use crate::verdict::Verdict;

pub use machine::SAMPLE_RATIO_METRIC;
pub use types::{Action, Command, CommandError, Decision, PauseReason, RolloutState, Weights};

/// Decisions kept in [`Rollout::history`].
pub const MAX_HISTORY: usize = 64;
/// Predictions held for labels (and for shadow answers) at most.
pub const MAX_PENDING_LABELS: usize = 65_536;

/// Argo-style counters of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricCounters {
    /// Failed looks.
    pub failed: u64,
    /// Inconclusive looks.
    pub inconclusive: u64,
    /// Consecutive NoData looks.
    pub consecutive_errors: u64,
}

/// A canary rollout: its configuration, position, evidence and audit history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    analysis: AnalysisSpec,
    steps: Vec<StepSpec>,
    trigger_specs: Vec<TriggerSpec>,
    state: RolloutState,
    canary_weight: u8,
    header_route: Option<String>,
    mirror: Option<(String, u8)>,
    started: bool,
    step_started: f64,
    next_look: f64,
    evidence: Evidence,
    judge: Judge,
    labels: LabelJoin,
    shadow: LabelJoin,
    triggers: Triggers,
    counters: BTreeMap<String, MetricCounters>,
    last_verdicts: Vec<Verdict>,
    history: VecDeque<Decision>,
    /// Stable and canary requests since the last weight change (for the sample-ratio check).
    #[serde(default)]
    step_counts: [u64; 2],
    /// Analysis specs of the `Analysis` steps that override `analysis`, by step index.
    #[serde(default)]
    gates: BTreeMap<usize, AnalysisSpec>,
}

impl Rollout {
    /// A rollout at step 0 with the canary at 0%; the first [`Rollout::tick`] starts it.
    pub fn new(analysis: AnalysisSpec, steps: Vec<StepSpec>, triggers: Vec<TriggerSpec>) -> Self {
        let ttl = analysis.label_ttl_s;
        let keep = analysis.interval_s;
        Rollout {
            triggers: Triggers::new(&triggers, keep),
            analysis,
            steps,
            trigger_specs: triggers,
            state: RolloutState::Progressing { step: 0 },
            canary_weight: 0,
            header_route: None,
            mirror: None,
            started: false,
            step_started: 0.0,
            next_look: 0.0,
            evidence: Evidence::default(),
            judge: Judge::new(),
            labels: LabelJoin::new(ttl, MAX_PENDING_LABELS),
            shadow: LabelJoin::new(ttl, MAX_PENDING_LABELS),
            counters: BTreeMap::new(),
            last_verdicts: Vec::new(),
            history: VecDeque::new(),
            step_counts: [0, 0],
            gates: BTreeMap::new(),
        }
    }

    /// Gives the `Analysis` step at index `step` its own spec (a policy's per-step override),
    /// used for the looks while the rollout stands at that step. Ignored for other steps.
    #[must_use]
    pub fn with_gate_analysis(mut self, step: usize, spec: AnalysisSpec) -> Self {
        if self.steps.get(step) == Some(&StepSpec::Analysis) {
            self.gates.insert(step, spec);
        }
        self
    }

    /// The spec the next look uses: the current gate step's own, else the base analysis.
    pub fn active_analysis(&self) -> &AnalysisSpec {
        match self.state {
            RolloutState::Progressing { step }
            | RolloutState::Paused { step, .. }
            | RolloutState::Inconclusive { step } => self.gates.get(&step),
            _ => None,
        }
        .unwrap_or(&self.analysis)
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[StepSpec] {
        &self.steps
    }

    /// The current state.
    pub fn state(&self) -> &RolloutState {
        &self.state
    }

    /// The current weights.
    pub fn weights(&self) -> Weights {
        Weights::canary(self.canary_weight)
    }

    /// The analysis specification.
    pub fn analysis(&self) -> &AnalysisSpec {
        &self.analysis
    }

    /// The latest verdicts.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.last_verdicts
    }

    /// The last [`MAX_HISTORY`] decisions, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Decision> {
        self.history.iter()
    }

    /// The per-metric Argo counters.
    pub fn counters(&self) -> &BTreeMap<String, MetricCounters> {
        &self.counters
    }

    /// The share of predictions that got a ground-truth label (see [`LabelJoin::label_rate`]).
    pub fn label_rate(&self) -> Option<f64> {
        self.labels.label_rate()
    }

    /// Records one request sample (at `sample.t`); ignored once the rollout has ended.
    ///
    /// Stable and canary samples feed the evidence and the triggers and wait for their label
    /// (and their shadow answer); a shadow or mirror sample is joined by request id to the
    /// serving arm's prediction and recorded as agreement.
    pub fn observe(&mut self, sample: &Sample) {
        if self.state.is_terminal() {
            return;
        }
        let t = sample.t;
        match sample.arm {
            Arm::Stable | Arm::Canary => {
                self.step_counts[usize::from(sample.arm == Arm::Canary)] += 1;
                self.evidence.record(sample, &self.analysis.positive_label);
                self.triggers.record(sample);
                if let Some(truth) = &sample.truth {
                    let correct = sample.label.as_deref() == Some(truth.as_str());
                    if sample.label.is_some() {
                        self.triggers.record_labelled(sample.arm, correct, t);
                    }
                } else {
                    self.labels.record_prediction(sample, t);
                }
                self.shadow.record_prediction(sample, t);
            }
            Arm::Shadow | Arm::Mirror => {
                let (Some(id), Some(label)) = (&sample.request_id, &sample.label) else {
                    return;
                };
                if let Some(joined) = self.shadow.join(id, label, t) {
                    let arm = joined.prediction.arm;
                    let agreed = joined.prediction.label.as_deref() == Some(label.as_str());
                    if let Some(e) = self.evidence.arm_mut(arm) {
                        e.record_agreement(agreed);
                    }
                    self.triggers.record_agreement(arm, agreed, t);
                }
            }
        }
    }

    /// Joins a delayed ground-truth label to its prediction; returns whether it matched.
    pub fn record_label(&mut self, request_id: &str, truth: &str, now: f64) -> bool {
        let Some(joined) = self.labels.join(request_id, truth, now) else {
            return false;
        };
        let p = &joined.prediction;
        if let Some(e) = self.evidence.arm_mut(p.arm) {
            e.record_labelled(
                p.label.as_deref(),
                p.score,
                truth,
                &self.analysis.positive_label,
            );
        }
        if p.label.is_some() {
            let correct = p.label.as_deref() == Some(truth);
            self.triggers.record_labelled(p.arm, correct, now);
        }
        true
    }

    /// Lets time pass to `now`: starts the rollout, checks triggers, takes the analysis look when
    /// an interval is due and advances timed steps. Returns the transitions made.
    pub fn tick(&mut self, now: f64) -> Vec<Decision> {
        let mut out = Vec::new();
        self.labels.expire(now);
        self.shadow.expire(now);
        if self.state.is_terminal() {
            return out;
        }
        if !self.started {
            self.started = true;
            self.next_look = now + self.analysis.interval_s;
            out.extend(self.enter_step(0, now, "rollout started".to_owned(), Vec::new()));
        }
        out.extend(self.tick_staged(now));
        out.extend(self.check_triggers(now));
        if now >= self.next_look && !self.state.is_terminal() {
            let interval = self.active_analysis().interval_s.max(1e-3);
            while self.next_look <= now {
                self.next_look += interval;
            }
            if !matches!(self.state, RolloutState::RollingBack { .. }) {
                out.extend(self.look(now));
            }
        }
        out.extend(self.tick_pause(now));
        out
    }
}
