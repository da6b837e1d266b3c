//! The transitions of [`Rollout`]: steps, analysis looks, gates, triggers, staged rollbacks,
//! commands.

use crate::judge::{Evidence, Judge};
use crate::spec::{AnalysisSpec, GapAction, MetricKind, StepSpec, TriggerAction};
use crate::stats::srm::sample_ratio_mismatch;
use crate::verdict::{Outcome, TestUsed, Verdict};

/// The verdict name of the sample-ratio check.
pub const SAMPLE_RATIO_METRIC: &str = "sample-ratio";
/// Requests since the last weight change before the split is checked.
const SRM_MIN_SAMPLES: u64 = 200;
/// Significance of a sample-ratio mismatch (strict: it is checked at every look).
const SRM_ALPHA: f64 = 1e-3;

use super::types::format_seconds;
use super::{
    Action, Command, CommandError, Decision, GateRecord, PauseReason, Rollout, RolloutState,
    MAX_GATE_RECORDS, MAX_HISTORY,
};

impl Rollout {
    /// Records a transition to `to` with `actions`, and returns its decision.
    fn transition(
        &mut self,
        now: f64,
        to: RolloutState,
        actions: Vec<Action>,
        reason: String,
    ) -> Decision {
        let from = std::mem::replace(&mut self.state, to.clone());
        let decision = Decision {
            time: now,
            from,
            to,
            step: self.state.step().unwrap_or(self.steps.len()),
            weights: self.weights(),
            actions,
            verdicts: self.last_verdicts.clone(),
            reason,
        };
        self.history.push_back(decision.clone());
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
        decision
    }

    fn set_weight(&mut self, weight: u8, actions: &mut Vec<Action>) {
        self.canary_weight = weight.min(100);
        self.step_counts = [0, 0];
        actions.push(Action::SetWeight {
            canary: self.canary_weight,
        });
    }

    /// A gate that stays inconclusive at its time bound: `onInconclusive` holds it for a human,
    /// rolls back, or continues to the next step without evidence; the gate records which.
    fn on_inconclusive(
        &mut self,
        action: GapAction,
        step: usize,
        now: f64,
        why: &str,
    ) -> Option<Decision> {
        match action {
            GapAction::Hold => {
                self.record_gate(step, now, "inconclusive: held for a human".to_owned());
                Some(self.transition(
                    now,
                    RolloutState::Inconclusive { step },
                    Vec::new(),
                    format!("{why}; onInconclusive: hold"),
                ))
            }
            GapAction::Rollback => {
                self.record_gate(step, now, "inconclusive: rolled back".to_owned());
                Some(self.rollback(
                    now,
                    TriggerAction::Immediate,
                    None,
                    format!("{why}; onInconclusive: rollback"),
                ))
            }
            GapAction::Continue => {
                self.record_gate(
                    step,
                    now,
                    "inconclusive: continued without evidence".to_owned(),
                );
                self.enter_step(
                    step + 1,
                    now,
                    format!("{why}; onInconclusive: continue"),
                    Vec::new(),
                )
            }
        }
    }

    /// Records how the gate at `step` ended.
    fn record_gate(&mut self, step: usize, now: f64, outcome: String) {
        self.gate_records.push_back(GateRecord {
            step,
            started: self.step_started,
            ended: now,
            outcome,
            verdicts: self.last_verdicts.clone(),
        });
        while self.gate_records.len() > MAX_GATE_RECORDS {
            self.gate_records.pop_front();
        }
    }

    /// The time bound of the gate at `step`, seconds.
    fn max_duration(&self, step: usize) -> Option<f64> {
        self.gates
            .get(&step)
            .unwrap_or(&self.analysis)
            .max_duration_s
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| d.ceil())
    }

    /// Applies steps from `step` on until one waits, or promotes past the last.
    pub(super) fn enter_step(
        &mut self,
        mut step: usize,
        now: f64,
        reason: String,
        mut actions: Vec<Action>,
    ) -> Option<Decision> {
        loop {
            let Some(spec) = self.steps.get(step).cloned() else {
                self.set_weight(100, &mut actions);
                // The canary is the whole traffic now: its managed routes end with the rollout
                // (the data plane follows the state; `Promote` says it, so no action per route).
                self.header_routes.clear();
                self.mirrors.clear();
                actions.push(Action::Promote);
                let why = format!("{reason}; all {} steps done: promoted", self.steps.len());
                return Some(self.transition(now, RolloutState::Promoted, actions, why));
            };
            match spec {
                StepSpec::SetWeight(w) => self.set_weight(w, &mut actions),
                StepSpec::SetHeaderRoute { name } => {
                    self.header_routes.insert(name.clone());
                    actions.push(Action::SetHeaderRoute { name });
                }
                StepSpec::RemoveHeaderRoute { name } => {
                    if self.header_routes.remove(&name) {
                        actions.push(Action::RemoveHeaderRoute { name });
                    }
                }
                StepSpec::SetMirrorRoute { name, percent: 0 } => {
                    // Argo removes a mirror route set again without a share.
                    if self.mirrors.remove(&name).is_some() {
                        actions.push(Action::RemoveMirror { name });
                    }
                }
                StepSpec::SetMirrorRoute { name, percent } => {
                    self.mirrors.insert(name.clone(), percent.min(100));
                    actions.push(Action::SetMirror { name, percent });
                }
                StepSpec::Pause { duration_s: None } => {
                    self.step_started = now;
                    let to = RolloutState::Paused {
                        step,
                        reason: PauseReason::ManualGate,
                    };
                    let why = format!("{reason}; step {}: paused until promoted", step + 1);
                    return Some(self.transition(now, to, actions, why));
                }
                StepSpec::Pause { .. } | StepSpec::Analysis => {
                    self.step_started = now;
                    let mut why = format!("{reason}; step {}: {spec}", step + 1);
                    if spec == StepSpec::Analysis {
                        self.gate_inconclusive = 0;
                        self.last_look_passed = false;
                        self.gate_deadline = self.max_duration(step).map(|d| now + d);
                        if let Some(&w) = self.watches.get(&step) {
                            // A watch ends at its duration, not at maxDuration.
                            self.gate_deadline = Some(now + w);
                            why.push_str(&format!(
                                " (watches for {}: a failure rolls back; at its end the rollout goes on if the last look passed)",
                                format_seconds(w)
                            ));
                        } else if let Some(d) = self.max_duration(step) {
                            why.push_str(&format!(
                                " (waits for evidence at most {} per period)",
                                format_seconds(d)
                            ));
                        }
                    }
                    return Some(self.transition(
                        now,
                        RolloutState::Progressing { step },
                        actions,
                        why,
                    ));
                }
            }
            step += 1;
        }
    }

    /// Rolls back in `mode` (a staged one halves the weight and observes one trigger window).
    fn rollback(
        &mut self,
        now: f64,
        mode: TriggerAction,
        trigger: Option<String>,
        reason: String,
    ) -> Decision {
        if let (TriggerAction::Staged, Some(name), Some(step)) =
            (mode, trigger.clone(), self.state.step())
        {
            let mut actions = vec![Action::Rollback { mode }];
            let restore_weight = self.canary_weight;
            let window = self
                .triggers
                .window_s(&name)
                .unwrap_or(self.analysis.interval_s)
                .ceil()
                .max(1.0);
            self.set_weight(restore_weight / 2, &mut actions);
            let to = RolloutState::RollingBack {
                step,
                trigger: name,
                restore_weight,
                restore_to: Box::new(self.state.clone()),
                since: now,
                decide_at: now + window,
            };
            let why = format!(
                "{reason}; staged: weight halved, observing for {} before finishing or restoring",
                format_seconds(window)
            );
            return self.transition(now, to, actions, why);
        }
        let actions = self.retract(mode);
        self.transition(
            now,
            RolloutState::RolledBack {
                reason: reason.clone(),
                trigger,
            },
            actions,
            reason,
        )
    }

    /// Takes the canary out of the traffic at once: weight 0 and its header route removed, and
    /// its mirror too unless `mode` keeps it (`CanaryOnly`). Returns the actions, a rollback's.
    pub(super) fn retract(&mut self, mode: TriggerAction) -> Vec<Action> {
        let mut actions = vec![Action::Rollback { mode }];
        self.set_weight(0, &mut actions);
        self.remove_routes(mode != TriggerAction::CanaryOnly, &mut actions);
        actions
    }

    /// Removes every header route, and every mirror route when `mirrors`, with their actions.
    fn remove_routes(&mut self, mirrors: bool, actions: &mut Vec<Action>) {
        for name in std::mem::take(&mut self.header_routes) {
            actions.push(Action::RemoveHeaderRoute { name });
        }
        if mirrors {
            for (name, _) in std::mem::take(&mut self.mirrors) {
                actions.push(Action::RemoveMirror { name });
            }
        }
    }

    /// Finishes or undoes a staged rollback once its trigger window has passed: the weight is
    /// restored only when the data since the halving shows the condition cleared.
    pub(super) fn tick_staged(&mut self, now: f64) -> Option<Decision> {
        let RolloutState::RollingBack {
            trigger,
            restore_weight,
            restore_to,
            since,
            decide_at,
            ..
        } = self.state.clone()
        else {
            return None;
        };
        if now < decide_at {
            return None;
        }
        let clearance = self.triggers.cleared_since(&trigger, since);
        let samples = clearance.as_ref().map_or(0, |c| c.samples);
        match clearance.and_then(|c| c.cleared.map(|cleared| (cleared, c.bound))) {
            Some((true, bound)) => {
                let mut actions = Vec::new();
                self.set_weight(restore_weight, &mut actions);
                self.restored.insert(trigger.clone());
                let why = format!(
                    "staged rollback: the {samples} canary samples since the halving show trigger {trigger}'s condition cleared (bound {}), weight restored; a second firing rolls back at once",
                    bound.map_or("n/a".to_owned(), |b| format!("{b:.4}"))
                );
                Some(self.transition(now, *restore_to, actions, why))
            }
            shown => {
                let what = match shown {
                    Some(_) => format!(
                        "the {samples} canary samples since the halving do not show its condition cleared"
                    ),
                    None => format!("too few canary samples since the halving ({samples})"),
                };
                let why = format!("staged rollback finished: trigger {trigger}: {what}");
                Some(self.rollback(now, TriggerAction::Immediate, Some(trigger), why))
            }
        }
    }

    /// Fires the first trigger whose condition is shown (not during a staged rollback). A staged
    /// trigger that already restored once rolls back at once.
    pub(super) fn check_triggers(&mut self, now: f64) -> Option<Decision> {
        if matches!(self.state, RolloutState::RollingBack { .. }) || self.state.is_terminal() {
            return None;
        }
        let firing = self.triggers.evaluate(now)?;
        let (mode, reason) = if firing.action == TriggerAction::Staged
            && self.restored.contains(&firing.trigger)
        {
            (
                    TriggerAction::Immediate,
                    format!(
                        "{}; it already restored the weight once in this rollout, so it rolls back at once",
                        firing.reason
                    ),
                )
        } else {
            (firing.action, firing.reason)
        };
        Some(self.rollback(now, mode, Some(firing.trigger), reason))
    }

    /// Accuracy and calibration are NoData while too few predictions have their ground truth.
    fn require_labels(&self, verdicts: &mut [Verdict]) {
        let min = self.active_analysis().min_label_rate;
        // Labelled so far, of every prediction recorded (pending ones count as not yet labelled;
        // samples that carried their truth count as labelled).
        let counts = self.labels.counts();
        let rate = if counts.predictions == 0 {
            0.0
        } else {
            counts.joined as f64 / counts.predictions as f64
        };
        if min <= 0.0 || rate >= min {
            return;
        }
        for v in verdicts.iter_mut() {
            let needs_labels = self.active_analysis().metrics.iter().any(|m| {
                m.name == v.metric
                    && matches!(m.kind, MetricKind::Accuracy | MetricKind::Calibration)
            });
            if needs_labels && v.outcome != Outcome::NoData {
                let reason = format!(
                    "label rate {:.1}% is below the minimum {:.1}%",
                    rate * 100.0,
                    min * 100.0
                );
                let (ns, nc) = (v.n_stable, v.n_canary);
                *v = Verdict::new(&v.metric, Outcome::NoData, TestUsed::None, reason);
                v.n_stable = ns;
                v.n_canary = nc;
            }
        }
    }

    /// Sample-ratio mismatch: do the arms' request counts since the last weight change match the
    /// weight? A mismatch (p < 0.001) means routing is not doing what the rollout asked.
    fn sample_ratio(&self) -> Option<Verdict> {
        let [stable, canary] = self.step_counts;
        let w = f64::from(self.canary_weight);
        // With a header route, matching requests go to the canary whatever the weight: the
        // split no longer follows the weight alone, so there is no ratio to check.
        if !self.header_routes.is_empty() {
            return None;
        }
        if stable + canary < SRM_MIN_SAMPLES || w <= 0.0 || w >= 100.0 {
            return None;
        }
        let test = sample_ratio_mismatch(&[stable, canary], &[100.0 - w, w]).ok()?;
        let mismatch = test.p_value < SRM_ALPHA;
        let reason = if mismatch {
            format!(
                "sample-ratio mismatch: {canary} of {} requests went to the canary at weight {w}% \
                 (chi-square p = {:.2e}): check the routing",
                stable + canary,
                test.p_value
            )
        } else {
            format!(
                "the split matches the weight {w}% (chi-square p = {:.3})",
                test.p_value
            )
        };
        let outcome = if mismatch {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        };
        let mut v = Verdict::new(SAMPLE_RATIO_METRIC, outcome, TestUsed::SampleRatio, reason);
        v.n_stable = stable;
        v.n_canary = canary;
        v.statistic = crate::verdict::finite(test.statistic);
        v.p_value = crate::verdict::finite(test.p_value);
        Some(v)
    }

    /// One analysis look: verdicts, counters, limits, and the analysis gate.
    pub(super) fn look(&mut self, now: f64) -> Option<Decision> {
        let spec = self.active_analysis().clone();
        let mut verdicts = self.judge.evaluate(&spec, &self.evidence);
        self.require_labels(&mut verdicts);
        // With Kayenta scoring the score alone is judged (and reported after the metrics).
        let score = Judge::score(&spec, &verdicts);
        let judged = score.clone().map_or_else(|| verdicts.clone(), |s| vec![s]);
        let counted = self.count(&spec, &verdicts, &judged);
        verdicts.extend(score);
        // Informational: reported with the verdicts, never counted towards the limits.
        verdicts.extend(self.sample_ratio());
        self.last_verdicts = verdicts;
        if let Some(v) = counted.failed {
            let why = format!("analysis failed: {}: {}", v.metric, v.reason);
            return Some(self.rollback(now, TriggerAction::Immediate, None, why));
        }
        if let Some(v) = counted.silent {
            if let Some(decision) = self.no_data_gap(now, &spec, v) {
                return Some(decision);
            }
        }
        self.open_gate(now, &spec, &judged)
    }

    /// The counting step of a look: each metric's Argo counters. Returns the first metric that
    /// got no new sample in one arm for more looks than `consecutive_error_limit` (no traffic,
    /// or a failing metric source: Argo's consecutive measurement errors), and the first
    /// judged verdict that fails past `failure_limit` (or is a critical metric's Fail).
    fn count(&mut self, spec: &AnalysisSpec, verdicts: &[Verdict], judged: &[Verdict]) -> Counted {
        let mut counted = Counted::default();
        // With the canary at 100% (a blue-green after its switch) stable gets no traffic by
        // design: its silence is not a gap, and only the canary's samples must keep coming.
        let stable_served = self.canary_weight < 100;
        for v in verdicts {
            let c = self.counters.entry(v.metric.clone()).or_default();
            let grew =
                (v.n_stable > c.last_samples.0 || !stable_served) && v.n_canary > c.last_samples.1;
            c.last_samples = (
                v.n_stable.max(c.last_samples.0),
                v.n_canary.max(c.last_samples.1),
            );
            c.consecutive_errors = if grew { 0 } else { c.consecutive_errors + 1 };
            let limit = spec.consecutive_error_limit;
            if limit >= 0 && c.consecutive_errors > limit as u64 && counted.silent.is_none() {
                counted.silent = Some(v.clone());
            }
        }
        for v in judged {
            let c = self.counters.entry(v.metric.clone()).or_default();
            match v.outcome {
                Outcome::Fail { .. } => c.failed += 1,
                Outcome::Inconclusive => c.inconclusive += 1,
                Outcome::NoData | Outcome::Pass => {}
            }
            let past_limit = spec.failure_limit.is_some_and(|limit| c.failed > limit);
            if v.is_fail() && (v.critical || past_limit) && counted.failed.is_none() {
                counted.failed = Some(v.clone());
            }
        }
        counted
    }

    /// The gap step of a look: `on_no_data` for a metric without new data past its limit.
    fn no_data_gap(&mut self, now: f64, spec: &AnalysisSpec, v: Verdict) -> Option<Decision> {
        let step = self.state.step()?;
        let why = format!(
            "analysis: no data past consecutiveErrorLimit: {} received no new sample in one arm for {} looks in a row (stable {}, canary {}): no traffic, or the metric source is failing",
            v.metric,
            spec.consecutive_error_limit + 1,
            v.n_stable,
            v.n_canary
        );
        match spec.on_no_data {
            GapAction::Rollback => Some(self.rollback(now, TriggerAction::Immediate, None, why)),
            GapAction::Hold if matches!(self.state, RolloutState::Progressing { .. }) => {
                let to = RolloutState::Paused {
                    step,
                    reason: PauseReason::NoData { metric: v.metric },
                };
                Some(self.transition(now, to, Vec::new(), why))
            }
            GapAction::Hold | GapAction::Continue => None,
        }
    }

    /// Opens the analysis gate the rollout stands at when every judged metric passes (NoData
    /// too with `on_no_data: Continue`).
    fn open_gate(&mut self, now: f64, spec: &AnalysisSpec, judged: &[Verdict]) -> Option<Decision> {
        let RolloutState::Progressing { step } = self.state else {
            return None;
        };
        if self.steps.get(step) != Some(&StepSpec::Analysis) {
            return None;
        }
        let passes = !judged.is_empty()
            && judged.iter().all(|v| match v.outcome {
                Outcome::Pass => true,
                Outcome::NoData => spec.on_no_data == GapAction::Continue,
                Outcome::Inconclusive | Outcome::Fail { .. } => false,
            });
        self.last_look_passed = passes;
        if !passes || self.watches.contains_key(&step) {
            // A watch decides when it ends (tick_gate), on the last look.
            return None;
        }
        let waited = now - self.step_started;
        self.record_gate(step, now, "passed".to_owned());
        let why = format!(
            "step {}: analysis passed after {}: every metric shown within its allowance ({})",
            step + 1,
            format_seconds(waited),
            gate_summary(judged)
        );
        self.enter_step(step + 1, now, why, Vec::new())
    }

    /// A gate that reached its time bound without a decision: an inconclusive measurement.
    pub(super) fn tick_gate(&mut self, now: f64) -> Option<Decision> {
        let RolloutState::Progressing { step } = self.state else {
            return None;
        };
        if self.steps.get(step) != Some(&StepSpec::Analysis) {
            return None;
        }
        let deadline = self.gate_deadline?;
        if now < deadline {
            return None;
        }
        let spec = self.active_analysis().clone();
        if let Some(&watched) = self.watches.get(&step) {
            return self.end_watch(now, step, watched, &spec);
        }
        let period = self.max_duration(step).unwrap_or(0.0);
        self.gate_inconclusive += 1;
        let undecided = self.undecided_metrics();
        let why = format!(
            "step {}: analysis inconclusive after {}: not shown within the allowance: {} (inconclusive {} of limit {})",
            step + 1,
            format_seconds(now - self.step_started),
            if undecided.is_empty() {
                "no look yet".to_owned()
            } else {
                undecided.join(", ")
            },
            self.gate_inconclusive,
            spec.inconclusive_limit
        );
        let limit = spec.inconclusive_limit;
        if limit < 0 || self.gate_inconclusive <= limit as u64 {
            self.gate_deadline = Some(now + period);
            let why = format!("{why}; waiting another {}", format_seconds(period));
            let state = self.state.clone();
            return Some(self.transition(now, state, Vec::new(), why));
        }
        self.gate_deadline = None;
        self.on_inconclusive(spec.on_inconclusive, step, now, &why)
    }

    /// The metrics the last look did not show within their allowance (the sample-ratio check
    /// aside, which guards the split rather than the canary).
    fn undecided_metrics(&self) -> Vec<&str> {
        self.last_verdicts
            .iter()
            .filter(|v| v.outcome != Outcome::Pass && v.metric != SAMPLE_RATIO_METRIC)
            .map(|v| v.metric.as_str())
            .collect()
    }

    /// The end of a watching gate: the rollout goes on when the last look passed; otherwise
    /// the watch ended without evidence that the canary is good, and `on_inconclusive` applies
    /// at once (there is no second period: the duration is what the policy asked to watch).
    fn end_watch(
        &mut self,
        now: f64,
        step: usize,
        watched: f64,
        spec: &AnalysisSpec,
    ) -> Option<Decision> {
        self.gate_deadline = None;
        if self.last_look_passed {
            let summary = gate_summary(&self.last_verdicts);
            self.record_gate(step, now, "passed".to_owned());
            let why = format!(
                "step {}: watched {} without a failure and the last look shows every metric within its allowance ({summary})",
                step + 1,
                format_seconds(watched)
            );
            return self.enter_step(step + 1, now, why, Vec::new());
        }
        let undecided = self.undecided_metrics();
        let why = format!(
            "step {}: watched {} without a failure, but the last look does not show {} within the allowance",
            step + 1,
            format_seconds(watched),
            if undecided.is_empty() {
                "the metrics (no look yet)".to_owned()
            } else {
                undecided.join(", ")
            }
        );
        self.on_inconclusive(spec.on_inconclusive, step, now, &why)
    }

    /// Ends a timed pause step when its duration has passed.
    pub(super) fn tick_pause(&mut self, now: f64) -> Option<Decision> {
        let RolloutState::Progressing { step } = self.state else {
            return None;
        };
        let Some(StepSpec::Pause {
            duration_s: Some(d),
        }) = self.steps.get(step)
        else {
            return None;
        };
        let d = d.ceil().max(0.0);
        if now < self.step_started + d {
            return None;
        }
        let why = format!("step {}: paused {}", step + 1, format_seconds(d));
        self.enter_step(step + 1, now, why, Vec::new())
    }

    /// Applies a manual command at `now` (whole seconds: `now` is rounded down).
    pub fn command(&mut self, command: Command, now: f64) -> Result<Decision, CommandError> {
        let now = now.floor();
        let refused = |state: &RolloutState| CommandError {
            command,
            state: state.clone(),
            detail: None,
        };
        let why = |what: &str| format!("command: {what}");
        let at_gate = |r: &Rollout, step: usize| r.steps.get(step) == Some(&StepSpec::Analysis);
        let decision = match (command, self.state.clone()) {
            (Command::Start, RolloutState::Pending) => {
                self.started = true;
                if self.clock.is_none() {
                    self.clock = Some(now as i64);
                }
                self.counters.clear();
                self.step_counts = [0, 0];
                let decision = self.enter_step(0, now, why("start"), Vec::new());
                // After entering step 0, as the first tick does: a first step that is a gate
                // with its own interval looks at that interval.
                self.next_look = now + super::interval_s(self.active_analysis());
                decision
            }
            (_, RolloutState::Pending) => None,
            (Command::Abort, s) if !s.is_terminal() => {
                let actions = self.retract(TriggerAction::Immediate);
                let to = RolloutState::Aborted {
                    reason: why("abort"),
                };
                Some(self.transition(now, to, actions, why("abort")))
            }
            (Command::PromoteFull, s) if !s.is_terminal() => {
                let n = self.steps.len();
                self.enter_step(n, now, why("promote --full"), Vec::new())
            }
            (
                Command::Promote | Command::PromoteForce,
                RolloutState::Paused { step, .. } | RolloutState::Inconclusive { step },
            )
            | (
                Command::Resume,
                RolloutState::Paused {
                    step,
                    reason: PauseReason::ManualGate,
                },
            ) => {
                let reason = self.promote_past(command, step, now)?;
                self.counters.clear();
                self.enter_step(step + 1, now, reason, Vec::new())
            }
            (Command::Promote | Command::PromoteForce, RolloutState::Progressing { step }) => {
                let reason = self.promote_past(command, step, now)?;
                self.enter_step(step + 1, now, reason, Vec::new())
            }
            (
                Command::Resume,
                RolloutState::Paused { step, .. } | RolloutState::Inconclusive { step },
            ) => {
                self.counters.clear();
                self.restored.clear();
                if at_gate(self, step) {
                    self.gate_inconclusive = 0;
                    self.gate_deadline = self.max_duration(step).map(|d| now + d);
                    if let Some(&w) = self.watches.get(&step) {
                        // A resumed watch watches its whole duration again.
                        self.step_started = now;
                        self.last_look_passed = false;
                        self.gate_deadline = Some(now + w);
                    }
                }
                Some(self.transition(
                    now,
                    RolloutState::Progressing { step },
                    Vec::new(),
                    why("resume"),
                ))
            }
            (Command::Pause, RolloutState::Progressing { step }) => {
                let to = RolloutState::Paused {
                    step,
                    reason: PauseReason::Manual,
                };
                Some(self.transition(now, to, Vec::new(), why("pause")))
            }
            (
                Command::Retry,
                RolloutState::Aborted { .. }
                | RolloutState::RolledBack { .. }
                | RolloutState::Promoted,
            ) => {
                self.evidence = Evidence::new(self.analysis.transient_s);
                self.judge = Judge::new();
                self.triggers.clear();
                self.counters.clear();
                self.last_verdicts.clear();
                self.restored.clear();
                self.step_counts = [0, 0];
                self.next_look = now + self.active_interval_after_retry();
                if self.clock.is_none() {
                    self.clock = Some(now as i64);
                    self.started = true;
                }
                let mut actions = Vec::new();
                self.set_weight(0, &mut actions);
                // A mirror a canary-only rollback kept ends with the rollout it belonged to.
                self.remove_routes(true, &mut actions);
                self.enter_step(0, now, why("retry"), actions)
            }
            _ => None,
        };
        decision.ok_or_else(|| refused(&self.state))
    }

    /// Before a promote leaves `step`: an analysis gate without the evidence to open is
    /// skipped only by `promote --force` (refused otherwise, naming what is missing); how the
    /// gate ended is recorded. Returns the decision's reason.
    fn promote_past(
        &mut self,
        command: Command,
        step: usize,
        now: f64,
    ) -> Result<String, CommandError> {
        if self.steps.get(step) != Some(&StepSpec::Analysis) {
            return Ok(format!("command: {command}"));
        }
        let Some(missing) = self.missing_evidence() else {
            self.record_gate(step, now, "promoted by hand".to_owned());
            return Ok(format!("command: {command}"));
        };
        if command != Command::PromoteForce {
            return Err(CommandError {
                command,
                state: self.state.clone(),
                detail: Some(format!(
                    "step {} is an analysis gate without the evidence to open ({missing}); \
                     `augur rollout promote --force` skips it",
                    step + 1
                )),
            });
        }
        self.record_gate(
            step,
            now,
            format!("skipped by hand (promote --force) without evidence: {missing}"),
        );
        Ok(format!(
            "command: promote --force: step {}'s analysis skipped without evidence ({missing})",
            step + 1
        ))
    }

    /// What the analysis lacks to judge: `None` when the last look judged every metric (pass,
    /// fail or inconclusive), else each metric without enough data (`error-rate has 12 of 200
    /// samples`), or that no look was made yet.
    fn missing_evidence(&self) -> Option<String> {
        let judged: Vec<&Verdict> = self
            .last_verdicts
            .iter()
            .filter(|v| v.metric != SAMPLE_RATIO_METRIC)
            .collect();
        if judged.is_empty() {
            return Some("no analysis look yet".to_owned());
        }
        let short: Vec<String> = judged
            .iter()
            .filter(|v| v.outcome == Outcome::NoData)
            .map(|v| match v.needed {
                Some(needed) => format!(
                    "{} has {} of {needed} samples",
                    v.metric,
                    v.n_stable.min(v.n_canary)
                ),
                None => format!("{}: {}", v.metric, v.reason),
            })
            .collect();
        (!short.is_empty()).then(|| short.join("; "))
    }

    fn active_interval_after_retry(&self) -> f64 {
        let i = self.analysis.interval_s;
        if i.is_finite() {
            i.ceil().max(1.0)
        } else {
            60.0
        }
    }
}

/// What the counting step of a look found.
#[derive(Default)]
struct Counted {
    /// The first metric without new data past `consecutive_error_limit`.
    silent: Option<Verdict>,
    /// The first judged verdict that fails past `failure_limit`, or a critical one's Fail.
    failed: Option<Verdict>,
}

/// `error-rate +0.0041 ≤ +0.0100 (n 2113)` per metric, for the gate's reason.
fn gate_summary(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| match (v.bound, v.allowance) {
            (Some(b), Some(a)) => format!(
                "{} bound {b:+.4} vs allowed {a:+.4}, n {}/{}",
                v.metric, v.n_stable, v.n_canary
            ),
            _ => format!("{} {}", v.metric, v.outcome.name()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
