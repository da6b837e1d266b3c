//! The transitions of [`Rollout`]: steps, analysis looks, triggers, staged rollbacks, commands.

use crate::judge::{Evidence, Judge};
use crate::spec::{GapAction, MetricKind, StepSpec, TriggerAction};
use crate::stats::srm::sample_ratio_mismatch;
use crate::verdict::{Outcome, TestUsed, Verdict};

/// The verdict name of the sample-ratio check.
pub const SAMPLE_RATIO_METRIC: &str = "sample-ratio";
/// Requests since the last weight change before the split is checked.
const SRM_MIN_SAMPLES: u64 = 200;
/// Significance of a sample-ratio mismatch (strict: it is checked at every look).
const SRM_ALPHA: f64 = 1e-3;

use super::{
    Action, Command, CommandError, Decision, PauseReason, Rollout, RolloutState, MAX_HISTORY,
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
                actions.push(Action::Promote);
                let why = format!("{reason}; all {} steps done: promoted", self.steps.len());
                return Some(self.transition(now, RolloutState::Promoted, actions, why));
            };
            match spec {
                StepSpec::SetWeight(w) => self.set_weight(w, &mut actions),
                StepSpec::SetHeaderRoute { name } => {
                    self.header_route = Some(name.clone());
                    actions.push(Action::SetHeaderRoute { name });
                }
                StepSpec::SetMirrorRoute { name, percent } => {
                    self.mirror = Some((name.clone(), percent));
                    actions.push(Action::SetMirror { name, percent });
                }
                StepSpec::Pause { duration_s: None } => {
                    self.step_started = now;
                    let to = RolloutState::Paused {
                        step,
                        reason: PauseReason::ManualGate,
                    };
                    let why = format!("{reason}; step {step}: paused until promoted");
                    return Some(self.transition(now, to, actions, why));
                }
                StepSpec::Pause { .. } | StepSpec::Analysis => {
                    self.step_started = now;
                    let why = format!("{reason}; step {step}: {spec}");
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

    /// Rolls back in `mode` (a staged one halves the weight and observes one interval).
    fn rollback(
        &mut self,
        now: f64,
        mode: TriggerAction,
        trigger: Option<String>,
        reason: String,
    ) -> Decision {
        let mut actions = vec![Action::Rollback { mode }];
        if let (TriggerAction::Staged, Some(name), Some(step)) =
            (mode, trigger.clone(), self.state.step())
        {
            let restore_weight = self.canary_weight;
            self.set_weight(restore_weight / 2, &mut actions);
            let to = RolloutState::RollingBack {
                step,
                trigger: name,
                restore_weight,
                restore_to: Box::new(self.state.clone()),
                since: now,
                decide_at: now + self.analysis.interval_s,
            };
            return self.transition(now, to, actions, format!("{reason}; staged: weight halved"));
        }
        self.set_weight(0, &mut actions);
        if let Some(name) = self.header_route.take() {
            actions.push(Action::RemoveHeaderRoute { name });
        }
        if mode != TriggerAction::CanaryOnly {
            if let Some((name, _)) = self.mirror.take() {
                actions.push(Action::RemoveMirror { name });
            }
        }
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

    /// Finishes or undoes a staged rollback once its interval has passed.
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
        let held = self.triggers.holds_since(&trigger, since);
        let window = self.triggers.window_s(&trigger).unwrap_or(0.0);
        if held.is_none() && now < decide_at + window {
            return None; // too few samples since the halving yet: keep observing
        }
        match held {
            Some(false) => {
                let mut actions = Vec::new();
                self.set_weight(restore_weight, &mut actions);
                let why = format!(
                    "staged rollback: trigger {trigger} cleared at half weight, weight restored"
                );
                Some(self.transition(now, *restore_to, actions, why))
            }
            held => {
                let what = if held.is_some() {
                    "still holds"
                } else {
                    "could not be checked (too few samples)"
                };
                let why = format!("staged rollback finished: trigger {trigger} {what}");
                Some(self.rollback(now, TriggerAction::Immediate, Some(trigger), why))
            }
        }
    }

    /// Fires the first trigger whose condition holds (not during a staged rollback).
    pub(super) fn check_triggers(&mut self, now: f64) -> Option<Decision> {
        if matches!(self.state, RolloutState::RollingBack { .. }) || self.state.is_terminal() {
            return None;
        }
        let firing = self.triggers.evaluate(now)?;
        Some(self.rollback(now, firing.action, Some(firing.trigger), firing.reason))
    }

    /// Accuracy and calibration are NoData while too few predictions have their ground truth.
    fn require_labels(&self, verdicts: &mut [Verdict]) {
        let min = self.active_analysis().min_label_rate;
        // Labelled so far, of every prediction recorded (pending ones count as not yet labelled).
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
                *v = Verdict::new(&v.metric, Outcome::NoData, TestUsed::None, reason);
            }
        }
    }

    /// Sample-ratio mismatch: do the arms' request counts since the last weight change match the
    /// weight? A mismatch (p < 0.001) means routing is not doing what the rollout asked.
    fn sample_ratio(&self) -> Option<Verdict> {
        let [stable, canary] = self.step_counts;
        let w = f64::from(self.canary_weight);
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
        let judged: Vec<Verdict> = match Judge::score(&spec, &verdicts) {
            Some(score) => {
                verdicts.push(score.clone());
                vec![score]
            }
            None => verdicts.clone(),
        };
        // Informational: reported with the verdicts, never counted towards the limits.
        verdicts.extend(self.sample_ratio());
        self.last_verdicts = verdicts;
        let spec = &spec;
        let exceeds = |count: u64, limit: i64| limit >= 0 && count > limit as u64;
        let (mut failed, mut no_data, mut inconclusive) = (None, None, None);
        for v in &judged {
            let c = self.counters.entry(v.metric.clone()).or_default();
            match v.outcome {
                Outcome::Fail { .. } => c.failed += 1,
                Outcome::Inconclusive => c.inconclusive += 1,
                Outcome::NoData => c.consecutive_errors += 1,
                Outcome::Pass => {}
            }
            if v.outcome != Outcome::NoData {
                c.consecutive_errors = 0;
            }
            if v.is_fail() && (v.critical || exceeds(c.failed, spec.failure_limit)) {
                failed = failed.or(Some(v.clone()));
            }
            if exceeds(c.consecutive_errors, spec.consecutive_error_limit) {
                no_data = no_data.or(Some(v.clone()));
            }
            if exceeds(c.inconclusive, spec.inconclusive_limit) {
                inconclusive = inconclusive.or(Some(v.clone()));
            }
        }
        if let Some(v) = failed {
            let why = format!("analysis failed: {}: {}", v.metric, v.reason);
            return Some(self.rollback(now, TriggerAction::Immediate, None, why));
        }
        for (gap, action, what) in [
            (no_data, spec.on_no_data, "no data"),
            (inconclusive, spec.on_inconclusive, "inconclusive"),
        ] {
            let (Some(v), Some(step)) = (gap, self.state.step()) else {
                continue;
            };
            let why = format!("analysis {what} past its limit: {}: {}", v.metric, v.reason);
            match action {
                GapAction::Rollback => {
                    return Some(self.rollback(now, TriggerAction::Immediate, None, why))
                }
                GapAction::Hold if matches!(self.state, RolloutState::Progressing { .. }) => {
                    let to = if what == "no data" {
                        RolloutState::Paused {
                            step,
                            reason: PauseReason::NoData { metric: v.metric },
                        }
                    } else {
                        RolloutState::Inconclusive { step }
                    };
                    return Some(self.transition(now, to, Vec::new(), why));
                }
                GapAction::Hold | GapAction::Continue => {}
            }
        }
        let RolloutState::Progressing { step } = self.state else {
            return None;
        };
        if self.steps.get(step) != Some(&StepSpec::Analysis) {
            return None;
        }
        let passes = judged.iter().all(|v| match v.outcome {
            Outcome::Pass => true,
            Outcome::NoData => spec.on_no_data == GapAction::Continue,
            Outcome::Inconclusive => spec.on_inconclusive == GapAction::Continue,
            Outcome::Fail { .. } => false,
        });
        passes.then(|| {
            let why = format!("step {step}: analysis passed ({} verdicts)", judged.len());
            self.enter_step(step + 1, now, why, Vec::new())
        })?
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
        if now < self.step_started + d {
            return None;
        }
        let why = format!("step {step}: paused {d} s");
        self.enter_step(step + 1, now, why, Vec::new())
    }

    /// Applies a manual command at `now`.
    pub fn command(&mut self, command: Command, now: f64) -> Result<Decision, CommandError> {
        let refused = |state: &RolloutState| CommandError {
            command,
            state: state.clone(),
        };
        let why = |what: &str| format!("command: {what}");
        let decision = match (command, self.state.clone()) {
            (Command::Abort, s) if !s.is_terminal() => {
                let mut d = self.rollback(now, TriggerAction::Immediate, None, why("abort"));
                d.to = RolloutState::Aborted {
                    reason: why("abort"),
                };
                self.state = d.to.clone();
                if let Some(last) = self.history.back_mut() {
                    *last = d.clone();
                }
                Some(d)
            }
            (Command::PromoteFull, s) if !s.is_terminal() => {
                let n = self.steps.len();
                self.enter_step(n, now, why("promote --full"), Vec::new())
            }
            (
                Command::Promote,
                RolloutState::Paused { step, .. } | RolloutState::Inconclusive { step },
            )
            | (
                Command::Resume,
                RolloutState::Paused {
                    step,
                    reason: PauseReason::ManualGate,
                },
            ) => {
                self.counters.clear();
                self.enter_step(step + 1, now, why("promote"), Vec::new())
            }
            (Command::Promote, RolloutState::Progressing { step }) => {
                self.enter_step(step + 1, now, why("promote"), Vec::new())
            }
            (
                Command::Resume,
                RolloutState::Paused { step, .. } | RolloutState::Inconclusive { step },
            ) => {
                self.counters.clear();
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
            (Command::Retry, RolloutState::Aborted { .. } | RolloutState::RolledBack { .. }) => {
                self.evidence = Evidence::default();
                self.judge = Judge::new();
                self.triggers.clear();
                self.counters.clear();
                self.last_verdicts.clear();
                self.next_look = now + self.analysis.interval_s;
                let mut actions = Vec::new();
                self.set_weight(0, &mut actions);
                self.enter_step(0, now, why("retry"), actions)
            }
            _ => None,
        };
        decision.ok_or_else(|| refused(&self.state))
    }
}
