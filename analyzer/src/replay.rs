//! Replays a recorded event stream through the same rollout machine (`augur analyze`).
//!
//! Contract: the live proxy and the replay drive [`Rollout`] by the same rule, so they decide
//! the same things at the same times: before any event at time `t` the rollout is ticked to `t`
//! (it processes every whole second up to `⌊t⌋`, once: triggers every second, looks at the
//! analysis interval's whole-second boundaries), then the event is applied. Events are:
//! - a [`Sample`] (a JSON object with `arm`), observed; one carrying `truth` counts as a
//!   labelled prediction, for the accuracy metric and for `minLabelRate`;
//! - a delayed label `{"t", "request_id", "truth"}` (what `POST /labels` delivered), joined by
//!   request id;
//! - a clock tick `{"tick": t}`: the live proxy's once-a-second timer, which the proxy's
//!   recording (`augur proxy --record-samples DIR`) writes, so that the seconds processed
//!   between events are the same too;
//! - a manual command `{"t", "command": "promote"}` (refused commands are ignored, as live);
//! - a tally `{"from", "to", "arm", "labelled", "correct", ...}`: a fleet's labelled and
//!   shadow-compared predictions by count ([`crate::tally::Tally`]), read from Prometheus.
//!
//! Events are applied in the order given (the recording's order is the order the live rollout
//! applied them). A replay that starts at the first event starts the rollout at `⌊t⌋` of it;
//! the proxy's recording begins with the tick at which the live rollout started. After the last
//! event the replay ticks to `until` when given. The result is every [`Decision`], as the live
//! proxy logged them.

use augur_model::Sample;
use serde::{Deserialize, Serialize};

use crate::rollout::{Command, Decision, Rollout};
use crate::spec::{AnalysisSpec, StepSpec, TriggerSpec};

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Event {
    /// A request sample.
    Sample(Sample),
    /// A delayed ground-truth label.
    Label {
        /// When it arrived, seconds.
        t: f64,
        /// The request it labels.
        request_id: String,
        /// The true label.
        truth: String,
    },
    /// A manual command.
    Command {
        /// When, seconds.
        t: f64,
        /// Which.
        command: Command,
    },
    /// The clock reached `tick` seconds.
    Tick {
        /// The time, seconds.
        tick: f64,
    },
    /// A fleet's labelled and compared predictions by count, applied at its span's start.
    Tally(crate::tally::Tally),
}

impl Event {
    /// The event's time, seconds.
    pub fn time(&self) -> f64 {
        match self {
            Event::Sample(s) => s.t,
            Event::Label { t, .. } | Event::Command { t, .. } => *t,
            Event::Tick { tick } => *tick,
            Event::Tally(tally) => tally.from,
        }
    }

    /// Ticks `rollout` to the event's time, then applies it; returns the decisions made.
    pub fn apply(&self, rollout: &mut Rollout) -> Vec<Decision> {
        let t = self.time();
        if !t.is_finite() {
            return Vec::new();
        }
        let mut decisions = rollout.tick(t);
        match self {
            Event::Sample(s) => rollout.observe(s),
            Event::Label {
                request_id, truth, ..
            } => {
                rollout.record_label(request_id, truth, t);
            }
            Event::Command { command, .. } => decisions.extend(rollout.command(*command, t).ok()),
            Event::Tick { .. } => {}
            Event::Tally(tally) => rollout.record_tally(tally),
        }
        decisions
    }
}

/// Runs `samples` through a fresh [`Rollout`] and returns its decisions.
pub fn replay(
    spec: AnalysisSpec,
    steps: Vec<StepSpec>,
    triggers: Vec<TriggerSpec>,
    samples: impl Iterator<Item = Sample>,
) -> Vec<Decision> {
    replay_events(
        Rollout::new(spec, steps, triggers),
        samples.map(Event::Sample),
        None,
    )
}

/// Runs `events` through `rollout` (built by the caller, e.g. with per-step gate specs), then
/// ticks to `until` when given, and returns its decisions.
pub fn replay_events(
    mut rollout: Rollout,
    events: impl Iterator<Item = Event>,
    until: Option<f64>,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for event in events {
        decisions.extend(event.apply(&mut rollout));
    }
    if let Some(until) = until {
        decisions.extend(rollout.tick(until));
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_line_forms_parse() {
        let lines = [
            r#"{"t": 1.5, "arm": "canary", "latency_ms": 42.0, "status": 200}"#,
            r#"{"t": 3.0, "request_id": "r1", "truth": "NORMAL"}"#,
            r#"{"tick": 4}"#,
            r#"{"t": 5, "command": "promote"}"#,
            r#"{"from": 0, "to": 60, "arm": "canary", "labelled": 10, "correct": 9}"#,
        ];
        let events: Vec<Event> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("parses"))
            .collect();
        assert!(matches!(events[0], Event::Sample(_)));
        assert!(matches!(events[1], Event::Label { .. }));
        assert_eq!(events[2], Event::Tick { tick: 4.0 });
        assert_eq!(events[1].time(), 3.0);
        assert!(matches!(
            events[3],
            Event::Command {
                command: Command::Promote,
                ..
            }
        ));
        assert!(matches!(&events[4], Event::Tally(t) if t.correct == 9 && t.compared == 0));
        assert_eq!(events[4].time(), 0.0);
        assert!(serde_json::from_str::<Event>(r#"{"t": 1}"#).is_err());
    }
}
