//! The rollout's vocabulary: states, actions out, commands in and the audit [`Decision`].

use serde::{Deserialize, Serialize};

use crate::spec::TriggerAction;
use crate::verdict::Verdict;

/// Why a rollout is paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// An indefinite `Pause` step: waits for promote (or resume).
    ManualGate,
    /// A `pause` command.
    Manual,
    /// A metric had no data past `consecutive_error_limit` and `on_no_data` is Hold.
    NoData {
        /// The metric.
        metric: String,
    },
}

/// Where a rollout is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum RolloutState {
    /// Not started: the policy says it starts on a command (`startOn: command`) and none came
    /// yet. No step applies and no weight is set, so the routes keep their files' weights;
    /// samples are not evidence yet. `augur rollout start` enters step 1.
    Pending,
    /// Running step `step` (a timed pause, an analysis gate, or before the first tick).
    Progressing {
        /// The current step index.
        step: usize,
    },
    /// Paused at `step` until resumed or promoted.
    Paused {
        /// The current step index.
        step: usize,
        /// Why.
        reason: PauseReason,
    },
    /// A staged rollback: the canary weight was halved; after `decide_at` the rollback finishes
    /// if the trigger's condition still holds on the data since `since`, else `restore_weight` is
    /// restored. Without enough samples it keeps observing for up to one trigger window more,
    /// then finishes the rollback (the safe side).
    RollingBack {
        /// The step to return to on restore.
        step: usize,
        /// The trigger that fired.
        trigger: String,
        /// The canary weight before halving.
        restore_weight: u8,
        /// The state to return to on restore.
        restore_to: Box<RolloutState>,
        /// When the halving started.
        since: f64,
        /// When to decide.
        decide_at: f64,
    },
    /// The analysis was inconclusive past its limit (`on_inconclusive: Hold`): a human decides.
    Inconclusive {
        /// The current step index.
        step: usize,
    },
    /// Every step done: the canary takes all traffic.
    Promoted,
    /// Rolled back by the analysis or a trigger.
    RolledBack {
        /// Why.
        reason: String,
        /// The trigger that fired, if one did.
        trigger: Option<String>,
    },
    /// Aborted by a command.
    Aborted {
        /// Why.
        reason: String,
    },
}

impl RolloutState {
    /// Whether the rollout has ended (until a retry).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RolloutState::Promoted | RolloutState::RolledBack { .. } | RolloutState::Aborted { .. }
        )
    }

    /// The phase as the JSON's `phase` tag writes it (`progressing`, `rolled_back`, ...): for
    /// metrics, the dashboard's series and the terminal views.
    pub fn phase(&self) -> &'static str {
        match self {
            RolloutState::Pending => "pending",
            RolloutState::Progressing { .. } => "progressing",
            RolloutState::Paused { .. } => "paused",
            RolloutState::RollingBack { .. } => "rolling_back",
            RolloutState::Inconclusive { .. } => "inconclusive",
            RolloutState::Promoted => "promoted",
            RolloutState::RolledBack { .. } => "rolled_back",
            RolloutState::Aborted { .. } => "aborted",
        }
    }

    /// The current step, for non-terminal states.
    pub fn step(&self) -> Option<usize> {
        match self {
            RolloutState::Progressing { step }
            | RolloutState::Paused { step, .. }
            | RolloutState::RollingBack { step, .. }
            | RolloutState::Inconclusive { step } => Some(*step),
            _ => None,
        }
    }
}

/// What the proxy must do after a transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Send `canary` percent of traffic to the canary (the rest to stable).
    SetWeight {
        /// The canary's percentage.
        canary: u8,
    },
    /// Add the named header route to the canary.
    SetHeaderRoute {
        /// The managed route.
        name: String,
    },
    /// Remove the named header route.
    RemoveHeaderRoute {
        /// The managed route.
        name: String,
    },
    /// Mirror `percent` of traffic through the named route.
    SetMirror {
        /// The managed route.
        name: String,
        /// The mirrored percentage.
        percent: u8,
    },
    /// Stop the named mirror.
    RemoveMirror {
        /// The managed route.
        name: String,
    },
    /// A rollback in the given mode (the weights follow as `SetWeight`).
    Rollback {
        /// Immediate, staged or canary only.
        mode: TriggerAction,
    },
    /// The canary becomes the new stable.
    Promote,
}

/// A manual command (`augur rollout start|promote|abort|retry|pause|resume`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Start a rollout that waits for it (`startOn: command`) at its first step.
    Start,
    /// Skip the current pause or analysis step (Argo's `promote`).
    Promote,
    /// Skip the current step even when it is an analysis gate without the evidence to open
    /// (`promote --force`); the audit trail says what was skipped.
    PromoteForce,
    /// Skip every remaining step (Argo's `promote --full`).
    PromoteFull,
    /// Roll back now and stop.
    Abort,
    /// Start again from step 0 after a promotion, an abort or a rollback.
    Retry,
    /// Pause a progressing rollout.
    Pause,
    /// Resume a paused or inconclusive rollout (on an indefinite pause step: promote).
    Resume,
}

impl std::fmt::Display for PauseReason {
    /// `waiting for promotion`, `paused by a command`, `no data for error-rate`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseReason::ManualGate => f.write_str("waiting for promotion"),
            PauseReason::Manual => f.write_str("paused by a command"),
            PauseReason::NoData { metric } => write!(f, "no data for {metric}"),
        }
    }
}

impl std::fmt::Display for RolloutState {
    /// For people: steps count from 1, as in `augur rollout status` (`paused at step 2: waiting
    /// for promotion`); JSON keeps the 0-based index.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RolloutState::Pending => f.write_str("not started (waiting for `augur rollout start`)"),
            RolloutState::Progressing { step } => write!(f, "progressing at step {}", step + 1),
            RolloutState::Paused { step, reason } => {
                write!(f, "paused at step {} ({reason})", step + 1)
            }
            RolloutState::RollingBack { step, trigger, .. } => write!(
                f,
                "rolling back (staged, trigger {trigger}) at step {}",
                step + 1
            ),
            RolloutState::Inconclusive { step } => {
                write!(f, "inconclusive at step {}", step + 1)
            }
            RolloutState::Promoted => f.write_str("promoted"),
            RolloutState::RolledBack { .. } => f.write_str("rolled back"),
            RolloutState::Aborted { .. } => f.write_str("aborted"),
        }
    }
}

impl std::fmt::Display for Command {
    /// The command as typed: `promote`, `promote --full`, `abort`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Start => "start",
            Command::Promote => "promote",
            Command::PromoteForce => "promote --force",
            Command::PromoteFull => "promote --full",
            Command::Abort => "abort",
            Command::Retry => "retry",
            Command::Pause => "pause",
            Command::Resume => "resume",
        })
    }
}

/// Seconds as Go and Istio write durations (`45s`, `10m0s`, `1h30m0s`), the form policies use:
/// one duration format in policies, status, logs and messages.
pub fn format_seconds(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60),
    }
}

/// A command that does not apply in the current state.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandError {
    /// The command.
    pub command: Command,
    /// The state it was refused in.
    pub state: RolloutState,
    /// Why, when the state alone does not say (a promote that would skip a gate without
    /// evidence, with what it would skip and the command that does).
    pub detail: Option<String>,
}

impl std::fmt::Display for CommandError {
    /// `cannot resume: the rollout is progressing at step 1`, or the detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "cannot {}: {detail}", self.command),
            None => write!(f, "cannot {}: the rollout is {}", self.command, self.state),
        }
    }
}

impl std::error::Error for CommandError {}

/// Traffic weights in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Stable's share.
    pub stable: u8,
    /// The canary's share.
    pub canary: u8,
}

impl std::fmt::Display for Weights {
    /// `stable 95%, canary 5%`: for logs and messages (JSON keeps the two numbers).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stable {}%, canary {}%", self.stable, self.canary)
    }
}

impl Weights {
    /// Weights with `canary` percent to the canary.
    pub fn canary(canary: u8) -> Self {
        let canary = canary.min(100);
        Weights {
            stable: 100 - canary,
            canary,
        }
    }
}

/// What an analysis gate took to open, or how it ended: for `rollout status`, `/rollouts`, the
/// dashboard and the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// The gate's step index.
    pub step: usize,
    /// When the rollout reached the gate, seconds.
    pub started: f64,
    /// When the gate was decided, seconds.
    pub ended: f64,
    /// `passed`, `inconclusive` (its time bound, with what followed), or `promoted` by hand.
    pub outcome: String,
    /// The verdicts of the deciding look: each metric's bound, allowance and samples.
    pub verdicts: Vec<Verdict>,
}

/// One transition, for the audit log (JSON lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When, seconds (the `now` passed in).
    pub time: f64,
    /// The state before.
    pub from: RolloutState,
    /// The state after.
    pub to: RolloutState,
    /// The step after the transition (`steps.len()` once promoted).
    pub step: usize,
    /// The weights after the transition.
    pub weights: Weights,
    /// What the proxy must do.
    pub actions: Vec<Action>,
    /// The latest verdicts, with values and statistics.
    pub verdicts: Vec<Verdict>,
    /// Why, in words.
    pub reason: String,
}

/// A saved rollout's header routes: a set of names, or (state saved before several routes were
/// kept) one name or none.
pub(super) fn names_compat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeSet<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        One(String),
        Many(std::collections::BTreeSet<String>),
    }
    Ok(match Option::<Names>::deserialize(d)? {
        None => std::collections::BTreeSet::new(),
        Some(Names::One(name)) => std::iter::once(name).collect(),
        Some(Names::Many(names)) => names,
    })
}

/// A saved rollout's mirror routes: name → percent, or (state saved before several mirrors were
/// kept) one `[name, percent]` pair or none.
pub(super) fn mirrors_compat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, u8>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mirrors {
        One((String, u8)),
        Many(std::collections::BTreeMap<String, u8>),
    }
    Ok(match Option::<Mirrors>::deserialize(d)? {
        None => std::collections::BTreeMap::new(),
        Some(Mirrors::One((name, percent))) => std::iter::once((name, percent)).collect(),
        Some(Mirrors::Many(mirrors)) => mirrors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The managed routes a rollout holds: several by name, saved and read back, and a state
    /// saved when a rollout held one header route and one mirror still loads. A canary-only
    /// rollback keeps the mirror and drops the header route; a retry drops both.
    #[test]
    fn managed_routes_are_kept_by_name_and_old_state_still_loads() {
        use crate::rollout::Rollout;
        use crate::spec::{AnalysisSpec, StepSpec};
        let steps = vec![
            StepSpec::SetHeaderRoute { name: "a".into() },
            StepSpec::SetHeaderRoute { name: "b".into() },
            StepSpec::SetMirrorRoute {
                name: "m".into(),
                percent: 30,
            },
            StepSpec::SetWeight(10),
            StepSpec::Pause { duration_s: None },
        ];
        let mut r = Rollout::new(AnalysisSpec::default(), steps, vec![]);
        r.tick(0.0);
        assert_eq!(r.header_routes().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(r.mirror_routes().get("m"), Some(&30));
        let json = serde_json::to_value(&r).expect("serializes");
        let back: Rollout = serde_json::from_value(json.clone()).expect("reads back");
        assert_eq!(back, r);
        let mut old = json;
        old["header_route"] = serde_json::json!("a");
        old["mirror"] = serde_json::json!(["m", 30]);
        let old: Rollout = serde_json::from_value(old).expect("an old state loads");
        assert_eq!(old.header_routes().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(old.mirror_routes().get("m"), Some(&30));
        let mut none = serde_json::to_value(&r).expect("serializes");
        none["header_route"] = serde_json::Value::Null;
        none["mirror"] = serde_json::Value::Null;
        let none: Rollout = serde_json::from_value(none).expect("an old empty state loads");
        assert_eq!(none.header_routes().count(), 0);
        assert!(none.mirror_routes().is_empty());
        // Canary-only: weight 0 and no header route, the mirror goes on.
        r.retract(TriggerAction::CanaryOnly);
        assert_eq!(r.header_routes().count(), 0);
        assert_eq!(r.mirror_routes().get("m"), Some(&30));
    }

    /// `phase()` names each state as its JSON does, which readers of `/rollouts` match on.
    #[test]
    fn phase_is_the_json_tag() {
        let states = [
            RolloutState::Pending,
            RolloutState::Progressing { step: 1 },
            RolloutState::Paused {
                step: 1,
                reason: PauseReason::Manual,
            },
            RolloutState::RollingBack {
                step: 1,
                trigger: "t".to_owned(),
                restore_weight: 20,
                restore_to: Box::new(RolloutState::Progressing { step: 1 }),
                since: 0.0,
                decide_at: 1.0,
            },
            RolloutState::Inconclusive { step: 1 },
            RolloutState::Promoted,
            RolloutState::RolledBack {
                reason: "r".to_owned(),
                trigger: None,
            },
            RolloutState::Aborted {
                reason: "r".to_owned(),
            },
        ];
        for state in states {
            let json = serde_json::to_value(&state).expect("serializes");
            assert_eq!(json["phase"], state.phase(), "{state:?}");
        }
    }
}
