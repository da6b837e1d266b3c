//! What `augur controller` tells the sidecars that follow it: the routing its rollouts decided.
//!
//! The controller is the only writer of rollout state. Each change is a new [`FleetState`], a
//! whole snapshot (never a diff), pushed to every subscribed sidecar as one JSON line; a
//! sidecar that missed some simply applies the latest. A sidecar applies a rollout only when it
//! holds the same policy ([`RolloutRouting::policy_hash`]), so that a ConfigMap update still
//! propagating never mixes one policy's weights with another's routes.

use serde::{Deserialize, Serialize};

/// The version of this wire format; a sidecar refuses a state of another version.
pub const FLEET_PROTOCOL: u32 = 1;

/// Every rollout's routing, as the controller decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// [`FLEET_PROTOCOL`].
    pub protocol: u32,
    /// Counts the controller's changes, so a sidecar can tell a new state from a repeated one;
    /// it starts again with each controller process (with [`Self::controller`]).
    pub version: u64,
    /// Identifies the controller process that made this state.
    pub controller: String,
    /// When the newest decision in this state was made, on the rollout's clock (Unix
    /// milliseconds; for evidence read from Prometheus, the end of the window it judged).
    pub decided_at_ms: u64,
    /// When the controller published this state (Unix milliseconds, its wall clock): how long
    /// a decision takes to reach the sidecars is measured from here.
    #[serde(default)]
    pub published_at_ms: u64,
    /// One entry per CanaryPolicy the controller runs.
    pub rollouts: Vec<RolloutRouting>,
}

/// One rollout's routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRouting {
    /// The CanaryPolicy, `namespace/name`.
    pub policy: String,
    /// The hash of the CanaryPolicy and the routes it drives, as the controller loaded them;
    /// a sidecar whose own hash differs holds its last state for this policy and reports it.
    pub policy_hash: String,
    /// The stable version's destination (`host` or `host/subset`).
    pub stable: String,
    /// The canary version's destination.
    pub canary: String,
    /// The stable arm's weight, in percent.
    pub stable_weight: u8,
    /// The canary arm's weight, in percent.
    pub canary_weight: u8,
    /// The rollout's phase (`progressing`, `paused`, `promoted`, ...), for status pages.
    pub phase: String,
    /// The current step (1-based, as `augur rollout status` numbers them), if any.
    pub step: Option<usize>,
    /// When this rollout's routing last changed (Unix milliseconds).
    pub changed_at_ms: u64,
    /// The header routes in force (`setHeaderRoute` steps), by name: a sidecar applies each
    /// with the matches its own policy file defines (the same version: [`Self::policy_hash`]).
    /// Absent from a controller that predates them: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_routes: Vec<String>,
    /// The mirror routes in force (`setMirrorRoute` steps). Absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_routes: Vec<MirrorRouting>,
}

/// One mirror route in force: its name and the percent of requests copied to the canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRouting {
    /// The route's name.
    pub name: String,
    /// Percent (0–100) of the route's requests copied to the canary.
    pub percent: u8,
}

/// What a sidecar tells the controller when it subscribes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscriber {
    /// The sidecar's name (its pod name in Kubernetes).
    pub node: String,
    /// The hash of each CanaryPolicy the sidecar holds, `namespace/name` → hash.
    pub policies: Vec<(String, String)>,
}

/// Ground-truth labels the controller received on its one label endpoint, forwarded to every
/// sidecar: the one that recorded the prediction joins it (by request id) and counts it in its
/// evidence metrics; the others hold no such prediction and ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPush {
    /// The labels.
    pub labels: Vec<FleetLabel>,
}

/// One ground-truth label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetLabel {
    /// The request id (`x-request-id`) the model answered.
    pub request_id: String,
    /// The true class.
    pub label: String,
}

/// One line of a watch stream: a routing state or forwarded labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Push {
    /// The routing, whole.
    State(FleetState),
    /// Labels to join.
    Labels(LabelPush),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_as_one_json_line() {
        let state = FleetState {
            protocol: FLEET_PROTOCOL,
            version: 7,
            controller: "c1".into(),
            decided_at_ms: 1_700_000_000_000,
            published_at_ms: 1_700_000_000_001,
            rollouts: vec![RolloutRouting {
                policy: "models/pneumonia".into(),
                policy_hash: "abc".into(),
                stable: "pneumonia/v1".into(),
                canary: "pneumonia-canary".into(),
                stable_weight: 80,
                canary_weight: 20,
                phase: "progressing".into(),
                step: Some(3),
                changed_at_ms: 1_700_000_000_000,
                header_routes: vec!["beta".into()],
                mirror_routes: vec![MirrorRouting {
                    name: "copy".into(),
                    percent: 50,
                }],
            }],
        };
        let line = serde_json::to_string(&state).expect("json");
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<FleetState>(&line).expect("parse"),
            state
        );
    }

    /// A state from a controller that predates managed routes still parses (no routes), and
    /// one without routes is written as before, so an older sidecar parses it too.
    #[test]
    fn managed_routes_are_optional_on_the_wire() {
        let old = r#"{"policy":"d/p","policy_hash":"h","stable":"s","canary":"c","stable_weight":80,"canary_weight":20,"phase":"paused","step":2,"changed_at_ms":1}"#;
        let r: RolloutRouting = serde_json::from_str(old).expect("an older routing parses");
        assert!(r.header_routes.is_empty() && r.mirror_routes.is_empty());
        assert_eq!(serde_json::to_string(&r).expect("json"), old);
    }

    #[test]
    fn a_line_is_a_state_or_labels() {
        let labels = r#"{"labels":[{"request_id":"r1","label":"NORMAL"}]}"#;
        assert_eq!(
            serde_json::from_str::<Push>(labels).expect("labels"),
            Push::Labels(LabelPush {
                labels: vec![FleetLabel {
                    request_id: "r1".into(),
                    label: "NORMAL".into()
                }]
            })
        );
        let state =
            r#"{"protocol":1,"version":1,"controller":"c","decided_at_ms":0,"rollouts":[]}"#;
        assert!(matches!(
            serde_json::from_str::<Push>(state).expect("state"),
            Push::State(_)
        ));
        assert!(serde_json::from_str::<Push>(r#"{"labels":"x"}"#).is_err());
    }
}
