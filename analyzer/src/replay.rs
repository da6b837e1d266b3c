//! Replays a recorded sample stream through the same rollout machine (`augur analyze`).
//!
//! Contract: time comes only from [`Sample::t`] (samples are expected in time order; an earlier
//! sample is observed at the current time). Before each sample, the machine is ticked at every
//! tick boundary the stream has crossed, the tick being the analysis interval or a quarter of the
//! shortest trigger window if smaller (so triggers are checked at their bucket resolution);
//! after the last sample one final tick runs at its time. Samples carrying `truth` count as
//! labelled. The result is every [`Decision`], exactly as the live proxy would have logged them.

use augur_model::Sample;

use crate::rollout::{Decision, Rollout};
use crate::spec::{AnalysisSpec, StepSpec, TriggerSpec};
use crate::triggers::SUB_WINDOWS;

/// The tick period used by [`replay`] for these specs.
pub fn tick_period(spec: &AnalysisSpec, triggers: &[TriggerSpec]) -> f64 {
    triggers
        .iter()
        .map(|t| t.window_s / SUB_WINDOWS as f64)
        .filter(|p| p.is_finite() && *p > 0.0)
        .fold(spec.interval_s, f64::min)
        .max(1e-3)
}

/// Runs `samples` through a fresh [`Rollout`] and returns its decisions.
pub fn replay(
    spec: AnalysisSpec,
    steps: Vec<StepSpec>,
    triggers: Vec<TriggerSpec>,
    samples: impl Iterator<Item = Sample>,
) -> Vec<Decision> {
    let period = tick_period(&spec, &triggers);
    replay_rollout(Rollout::new(spec, steps, triggers), period, samples)
}

/// Runs `samples` through `rollout` (built by the caller, e.g. with per-step gate specs),
/// ticking every `period` seconds, and returns its decisions.
pub fn replay_rollout(
    mut rollout: Rollout,
    period: f64,
    samples: impl Iterator<Item = Sample>,
) -> Vec<Decision> {
    let period = period.max(1e-3);
    let mut decisions = Vec::new();
    let mut next_tick: Option<f64> = None;
    let mut last_t = f64::NEG_INFINITY;
    for mut sample in samples {
        if !sample.t.is_finite() {
            continue;
        }
        sample.t = sample.t.max(last_t);
        last_t = sample.t;
        let tick = next_tick.get_or_insert(sample.t);
        while *tick <= sample.t {
            decisions.extend(rollout.tick(*tick));
            *tick += period;
        }
        rollout.observe(&sample);
        if rollout.state().is_terminal() {
            break;
        }
    }
    if last_t.is_finite() {
        decisions.extend(rollout.tick(last_t));
    }
    decisions
}
