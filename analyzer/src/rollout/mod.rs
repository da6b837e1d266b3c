//! The rollout state machine: steps, background analysis, evidence gates, triggers, limits and
//! manual commands.
//!
//! Contract: a [`Rollout`] is driven by three inputs — [`Rollout::observe`] (a request sample),
//! [`Rollout::record_label`] (a delayed ground-truth label; or [`Rollout::record_tally`], a
//! fleet's labelled predictions by count) and [`Rollout::tick`] (time passes) — plus
//! [`Rollout::command`]. Time is counted in **whole seconds**: `tick(now)` processes every
//! second from the last one processed up to `⌊now⌋`, once each, so a caller may tick as often or
//! as rarely as it likes and the result is the same (the live proxy ticks once a second and
//! before every sample; `augur analyze` before every recorded event). Every transition returns a
//! [`Decision`] (time, from, to, step, weights, actions, verdicts, reason) for the audit log.
//! The whole value is serde, so a process killed at any point resumes at the same step, weight,
//! evidence and counters from its last persisted JSON.
//!
//! Semantics (Argo Rollouts, `reference/canary-analysis.md` §2), with gates that open on
//! evidence:
//! - steps: `SetWeight`, `SetHeaderRoute`, `SetMirrorRoute` apply at once; `Pause{Some(d)}`
//!   waits `d` s; `Pause{None}` pauses until promoted; `Analysis` is a **gate** that opens at the
//!   first look where every metric is shown within its allowance (Pass). An Inconclusive or
//!   NoData metric keeps the gate waiting (NoData is passed over only with `on_no_data:
//!   Continue`). A gate waits at most `max_duration_s`: reaching it is one inconclusive
//!   measurement; past `inconclusive_limit` of them `on_inconclusive` applies (Hold: state
//!   Inconclusive for a human; Rollback; Continue: next step), otherwise the gate waits another
//!   period. A gate made a watch ([`Rollout::set_gate_watch`], a blue-green post-promotion
//!   analysis with a `duration`) does not open early: at the end of its duration it opens if
//!   the last look passed, else `on_inconclusive` applies at once. After the last step the
//!   rollout is Promoted (canary 100%).
//! - the analysis runs in the background every `interval_s` (whole seconds) from the start, on
//!   the cumulative evidence, in every non-terminal state but a staged rollback. While the
//!   rollout stands at an `Analysis` step that has its own spec ([`Rollout::with_gate_analysis`])
//!   that spec replaces the base one. Per metric: Fail counts `failed` (rollback when `>
//!   failure_limit`, at once for a critical metric); a look at which the metric got no new
//!   sample in one arm counts `consecutive_errors`, reset by new samples (`on_no_data` when `>
//!   consecutive_error_limit`).
//! - triggers are checked once a second; Immediate → weight 0 and routes removed; Staged → half
//!   the weight for one trigger window, then restore only if the data since shows the condition
//!   cleared (at most once per trigger and rollout; a second firing rolls back at once), else
//!   finish; CanaryOnly → weight 0, mirror kept.
//! - start: a rollout made [`Rollout::awaiting_start`] (a policy's `startOn: command`) stays
//!   `Pending` (no weight set, no evidence taken, only the clock moves) until [`Command::Start`]
//!   enters step 0; every other command is refused until then.
//! - commands: promote, promote full, abort, retry (from Promoted, Aborted or RolledBack to step
//!   0, evidence cleared), pause, resume (counters cleared; on an indefinite pause step it
//!   promotes, as the Argo CD "Resume" button; a resumed Inconclusive gate waits another period).

mod machine;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

use crate::judge::{Evidence, Judge};
use crate::labels::{JoinedLabel, LabelJoin};
use crate::spec::{AnalysisSpec, StepSpec, TriggerSpec};
use crate::tally::Tally;
use crate::triggers::Triggers;
use crate::verdict::Verdict;

pub use machine::SAMPLE_RATIO_METRIC;
pub use types::{
    format_seconds, Action, Command, CommandError, Decision, GateRecord, PauseReason, RolloutState,
    Weights,
};

/// Decisions kept in [`Rollout::history`].
pub const MAX_HISTORY: usize = 64;
/// Gate records kept in [`Rollout::gates`].
pub const MAX_GATE_RECORDS: usize = 32;
/// The most seconds one [`Rollout::tick`] processes one by one; a longer gap (a proxy down for
/// hours) skips ahead, with no trigger checks or looks for the skipped seconds.
pub const MAX_CATCH_UP_S: i64 = 3600;
/// Predictions held for labels (and for shadow answers) at most.
pub const MAX_PENDING_LABELS: usize = 65_536;

/// Argo-style counters of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricCounters {
    /// Failed looks.
    pub failed: u64,
    /// Inconclusive looks.
    pub inconclusive: u64,
    /// Consecutive looks without a new sample in one of the arms.
    pub consecutive_errors: u64,
    /// The `(stable, canary)` samples behind the metric at the last look.
    #[serde(default)]
    pub last_samples: (u64, u64),
}

/// A canary rollout: its configuration, position, evidence and audit history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    analysis: AnalysisSpec,
    steps: Vec<StepSpec>,
    trigger_specs: Vec<TriggerSpec>,
    state: RolloutState,
    canary_weight: u8,
    /// The header routes set by `setHeaderRoute` steps and not removed yet (by name). Saved
    /// under its old name, which held one route; an older state file still loads.
    #[serde(
        default,
        rename = "header_route",
        deserialize_with = "types::names_compat"
    )]
    header_routes: BTreeSet<String>,
    /// The mirror routes set by `setMirrorRoute` steps: name → percent (an older state file's
    /// single `["name", percent]` still loads).
    #[serde(default, rename = "mirror", deserialize_with = "types::mirrors_compat")]
    mirrors: BTreeMap<String, u8>,
    started: bool,
    /// The last second processed (whole seconds; `None` before the first tick).
    #[serde(default)]
    clock: Option<i64>,
    step_started: f64,
    next_look: f64,
    /// When the current gate's waiting period ends.
    #[serde(default)]
    gate_deadline: Option<f64>,
    /// Inconclusive periods of the current gate so far.
    #[serde(default)]
    gate_inconclusive: u64,
    /// Staged triggers that already restored the weight once in this rollout.
    #[serde(default)]
    restored: BTreeSet<String>,
    /// What each gate took to open (or how it ended), oldest first.
    #[serde(default)]
    gate_records: VecDeque<GateRecord>,
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
    /// `Analysis` steps that watch for a fixed time (seconds, by step index) instead of opening
    /// at the first passing look: a blue-green post-promotion analysis with a `duration`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    watches: BTreeMap<usize, f64>,
    /// Whether the last look showed the gate's metrics within their allowances (what a watch
    /// decides on when it ends).
    #[serde(default)]
    last_look_passed: bool,
}

impl Rollout {
    /// A rollout at step 0 with the canary at 0%; the first [`Rollout::tick`] starts it.
    pub fn new(analysis: AnalysisSpec, steps: Vec<StepSpec>, triggers: Vec<TriggerSpec>) -> Self {
        let ttl = analysis.label_ttl_s;
        let keep = analysis.interval_s;
        let transient = analysis.transient_s;
        Rollout {
            triggers: Triggers::new(&triggers, keep),
            analysis,
            steps,
            trigger_specs: triggers,
            state: RolloutState::Progressing { step: 0 },
            canary_weight: 0,
            header_routes: BTreeSet::new(),
            mirrors: BTreeMap::new(),
            started: false,
            clock: None,
            step_started: 0.0,
            next_look: 0.0,
            gate_deadline: None,
            gate_inconclusive: 0,
            restored: BTreeSet::new(),
            gate_records: VecDeque::new(),
            evidence: Evidence::new(transient),
            judge: Judge::new(),
            labels: LabelJoin::new(ttl, MAX_PENDING_LABELS),
            shadow: LabelJoin::new(ttl, MAX_PENDING_LABELS),
            counters: BTreeMap::new(),
            last_verdicts: Vec::new(),
            history: VecDeque::new(),
            step_counts: [0, 0],
            gates: BTreeMap::new(),
            watches: BTreeMap::new(),
            last_look_passed: false,
        }
    }

    /// Makes the rollout wait for [`Command::Start`] (a policy's `startOn: command`): it stays
    /// [`RolloutState::Pending`], setting no weight and taking no evidence, until started.
    #[must_use]
    pub fn awaiting_start(mut self) -> Self {
        if !self.started {
            self.state = RolloutState::Pending;
        }
        self
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

    /// Makes the `Analysis` step at index `step` a watch of `seconds`: it cannot open before
    /// they have passed; when they have, it opens if the last look passed, else its
    /// `on_inconclusive` applies at once. A failure or a trigger within it rolls back, as at
    /// any gate. Ignored for other steps and for a duration that is not positive.
    pub fn set_gate_watch(&mut self, step: usize, seconds: f64) {
        if self.steps.get(step) == Some(&StepSpec::Analysis) && seconds.is_finite() && seconds > 0.0
        {
            self.watches.insert(step, seconds.ceil());
        }
    }

    /// [`Rollout::set_gate_watch`], as a builder.
    #[must_use]
    pub fn with_gate_watch(mut self, step: usize, seconds: f64) -> Self {
        self.set_gate_watch(step, seconds);
        self
    }

    /// When the current watch ends (seconds), if the rollout stands at a watching gate.
    pub fn watch_deadline(&self) -> Option<f64> {
        match self.state {
            RolloutState::Progressing { step } if self.watches.contains_key(&step) => {
                self.gate_deadline
            }
            _ => None,
        }
    }

    /// Replaces the whole configuration with a newer policy's, so that a retried rollout picks
    /// it up; refused (false) unless the rollout has ended.
    pub fn replace_spec(
        &mut self,
        analysis: AnalysisSpec,
        steps: Vec<StepSpec>,
        triggers: Vec<TriggerSpec>,
        gates: Vec<(usize, AnalysisSpec)>,
    ) -> bool {
        if !self.state.is_terminal() {
            return false;
        }
        self.triggers = Triggers::new(&triggers, analysis.interval_s);
        self.analysis = analysis;
        self.steps = steps;
        self.trigger_specs = triggers;
        // The caller sets the new policy's watches again ([`Rollout::set_gate_watch`]).
        self.watches.clear();
        self.gates = gates
            .into_iter()
            .filter(|(step, _)| self.steps.get(*step) == Some(&StepSpec::Analysis))
            .collect();
        true
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

    /// The header routes active now, by name: requests matching one go to the canary
    /// whatever the weights.
    pub fn header_routes(&self) -> impl Iterator<Item = &str> {
        self.header_routes.iter().map(String::as_str)
    }

    /// The mirror routes active now: name → percent of requests copied to the canary.
    pub fn mirror_routes(&self) -> &BTreeMap<String, u8> {
        &self.mirrors
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

    /// The cumulative evidence of each arm (requests, labels, agreement with the shadow).
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The per-metric Argo counters.
    pub fn counters(&self) -> &BTreeMap<String, MetricCounters> {
        &self.counters
    }

    /// The share of predictions that got a ground-truth label (see [`LabelJoin::label_rate`]).
    pub fn label_rate(&self) -> Option<f64> {
        self.labels.label_rate()
    }

    /// What each gate took to open, or how it ended, oldest first (at most
    /// [`MAX_GATE_RECORDS`]).
    pub fn gates(&self) -> impl Iterator<Item = &GateRecord> {
        self.gate_records.iter()
    }

    /// When the current gate stops waiting (seconds), if the rollout stands at a gate with a
    /// time bound (not a watch: see [`Rollout::watch_deadline`]).
    pub fn gate_deadline(&self) -> Option<f64> {
        match self.state {
            RolloutState::Progressing { step }
                if self.steps.get(step) == Some(&StepSpec::Analysis)
                    && !self.watches.contains_key(&step) =>
            {
                self.gate_deadline
            }
            _ => None,
        }
    }

    /// When the current timed pause step ends (seconds), if the rollout stands at one: a timed
    /// pause is a pause to people, with time left.
    pub fn pause_deadline(&self) -> Option<f64> {
        match (&self.state, self.steps.get(self.state.step()?)) {
            (
                RolloutState::Progressing { .. },
                Some(StepSpec::Pause {
                    duration_s: Some(d),
                }),
            ) => Some(self.step_started + d.ceil().max(0.0)),
            _ => None,
        }
    }

    /// The last second processed by [`Rollout::tick`].
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// Whether a prediction with this request id waits for its label.
    pub fn awaits_label(&self, request_id: &str) -> bool {
        self.labels.holds(request_id)
    }

    /// Records one request sample (at `sample.t`); ignored once the rollout has ended.
    ///
    /// Stable and canary samples feed the evidence and the triggers and wait for their label
    /// (and their shadow answer); a shadow or mirror sample is joined by request id to the
    /// serving arm's prediction and recorded as agreement.
    pub fn observe(&mut self, sample: &Sample) {
        if self.state.is_terminal() || self.state == RolloutState::Pending {
            return;
        }
        let t = sample.t;
        match sample.arm {
            Arm::Stable | Arm::Canary => {
                self.step_counts[usize::from(sample.arm == Arm::Canary)] += 1;
                self.evidence.record(sample, &self.analysis.positive_label);
                self.triggers.record(sample);
                if let Some(truth) = &sample.truth {
                    // Inline ground truth: a prediction labelled at once (it counts for the
                    // label rate as a joined one).
                    self.labels.record_inline(sample);
                    let correct = sample.label.as_deref() == Some(truth.as_str());
                    if sample.label.is_some() {
                        self.triggers.record_labelled(sample.arm, correct, t);
                    }
                } else {
                    self.labels.record_prediction(sample, t);
                }
                if let Some(joined) = self.shadow.record_prediction_or_join(sample, t) {
                    self.agreement(&joined, t);
                }
            }
            Arm::Shadow | Arm::Mirror => {
                let (Some(id), Some(label)) = (&sample.request_id, &sample.label) else {
                    return;
                };
                if let Some(joined) = self.shadow.answer(id, label, t) {
                    self.agreement(&joined, t);
                }
            }
        }
    }

    /// A prediction joined with the shadow's answer to the same request (in either order).
    fn agreement(&mut self, joined: &JoinedLabel, t: f64) {
        let arm = joined.prediction.arm;
        let agreed = joined.prediction.label.as_deref() == Some(joined.truth.as_str());
        self.evidence.record_agreement(arm, agreed, t);
        self.triggers.record_agreement(arm, agreed, t);
    }

    /// Records a tally of one arm's labelled and shadow-compared predictions (a fleet's
    /// counts, [`Tally`]); ignored once the rollout has ended. The evidence takes the counts and
    /// Brier moments as they are; the triggers see the events spread over the tally's span.
    pub fn record_tally(&mut self, tally: &Tally) {
        if self.state.is_terminal()
            || self.state == RolloutState::Pending
            || !matches!(tally.arm, Arm::Stable | Arm::Canary)
        {
            return;
        }
        self.labels
            .record_counted(tally.predictions, tally.labelled);
        self.evidence.record_tally(tally);
        let (arm, from, to) = (tally.arm, tally.from, tally.to);
        for (t, correct) in crate::tally::spread(tally.labelled, tally.correct, from, to) {
            self.triggers.record_labelled(arm, correct, t);
        }
        for (t, agreed) in crate::tally::spread(tally.compared, tally.agreed, from, to) {
            self.triggers.record_agreement(arm, agreed, t);
        }
    }

    /// Joins a delayed ground-truth label to its prediction; returns whether it matched.
    pub fn record_label(&mut self, request_id: &str, truth: &str, now: f64) -> bool {
        let Some(joined) = self.labels.join(request_id, truth, now) else {
            return false;
        };
        let p = &joined.prediction;
        self.evidence.record_labelled(
            p.arm,
            p.label.as_deref(),
            p.score,
            truth,
            &self.analysis.positive_label,
            now,
        );
        if p.label.is_some() {
            let correct = p.label.as_deref() == Some(truth);
            self.triggers.record_labelled(p.arm, correct, now);
        }
        true
    }

    /// Lets time pass to `now`: processes every whole second after the last one processed, up
    /// to `⌊now⌋` (the first call starts the rollout at `⌊now⌋`). Each second: label expiry, the
    /// staged rollback's decision, the triggers, the analysis look when one is due, the gate's
    /// time bound and timed pauses. Returns the transitions made.
    pub fn tick(&mut self, now: f64) -> Vec<Decision> {
        let mut out = Vec::new();
        if !now.is_finite() {
            return out;
        }
        let second = now.floor() as i64;
        let Some(last) = self.clock else {
            self.clock = Some(second);
            let s = second as f64;
            self.labels.expire(s);
            self.shadow.expire(s);
            if !self.state.is_terminal() && self.state != RolloutState::Pending && !self.started {
                self.started = true;
                out.extend(self.enter_step(0, s, "rollout started".to_owned(), Vec::new()));
                // After entering step 0: a first step that is a gate with its own interval (a
                // blue-green pre-promotion analysis) looks at that interval, not the base one.
                self.next_look = s + interval_s(self.active_analysis());
            }
            return out;
        };
        if second <= last {
            return out;
        }
        let from = (last + 1).max(second - MAX_CATCH_UP_S);
        if self.next_look < from as f64 {
            let interval = interval_s(self.active_analysis());
            while self.next_look < from as f64 {
                self.next_look += interval;
            }
        }
        for s in from..=second {
            self.clock = Some(s);
            let s = s as f64;
            self.labels.expire(s);
            self.shadow.expire(s);
            if self.state.is_terminal() || self.state == RolloutState::Pending {
                continue;
            }
            out.extend(self.second(s));
        }
        out
    }

    /// The work of one second.
    fn second(&mut self, s: f64) -> Vec<Decision> {
        let mut out = Vec::new();
        out.extend(self.tick_staged(s));
        out.extend(self.check_triggers(s));
        if s >= self.next_look && !self.state.is_terminal() {
            let interval = interval_s(self.active_analysis());
            while self.next_look <= s {
                self.next_look += interval;
            }
            if !matches!(self.state, RolloutState::RollingBack { .. }) {
                out.extend(self.look(s));
            }
        }
        out.extend(self.tick_gate(s));
        out.extend(self.tick_pause(s));
        out
    }
}

/// The analysis interval in whole seconds (at least 1).
fn interval_s(spec: &AnalysisSpec) -> f64 {
    if spec.interval_s.is_finite() {
        spec.interval_s.ceil().max(1.0)
    } else {
        60.0
    }
}
