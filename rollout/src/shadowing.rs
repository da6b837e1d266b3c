//! Shadow-only policies ([`augur_policies::Strategy::ShadowOnly`]): no canary, no steps, no
//! weights. [`Shadowing`] is what `Rollouts` keeps for one: the shadow's settings and stable's
//! agreement with it, shown in `GET /rollouts` beside the rollouts with the phase `shadowing`.

use augur_model::{Arm, Sample};
use augur_policies::CanaryPolicy;
use serde_json::{json, Value};

use crate::agreement::{Agreement, AgreementJoin};

/// The phase a shadow-only policy shows in `GET /rollouts`, the CLI and the dashboard.
pub const PHASE: &str = "shadowing";

/// One shadow-only policy's live state.
#[derive(Debug)]
pub struct Shadowing {
    /// The shadow model's path.
    model: String,
    /// Percent of the routes' requests scored by the shadow.
    percentage: f64,
    /// The policy files' fingerprint.
    policy_hash: String,
    /// The release key (stable only).
    release: String,
    /// When this process started scoring (Unix seconds).
    since: f64,
    /// Stable's predictions joined with the shadow's answers.
    join: AgreementJoin,
}

impl Shadowing {
    /// Scoring for `policy` (shadow-only) from `now` on.
    pub fn new(policy: &CanaryPolicy, policy_hash: &str, release: String, now: f64) -> Self {
        let mut s = Self {
            model: String::new(),
            percentage: 0.0,
            policy_hash: policy_hash.to_owned(),
            release,
            since: now,
            join: AgreementJoin::new(),
        };
        s.update(policy, policy_hash);
        s
    }

    /// Takes a reloaded policy's settings; the agreement so far is kept.
    pub fn update(&mut self, policy: &CanaryPolicy, policy_hash: &str) {
        if let Some(shadow) = &policy.shadow {
            self.model = shadow.model.clone();
            self.percentage = shadow.mirror_percentage.value();
        }
        self.policy_hash = policy_hash.to_owned();
    }

    /// Records a sample of the policy's routes (stable predictions and shadow answers).
    pub fn observe(&mut self, sample: &Sample) {
        self.join.observe(sample);
    }

    /// Stable's agreement with the shadow so far.
    pub fn agreement(&self) -> Agreement {
        let (compared, agreed) = self.join.counts(Arm::Stable);
        Agreement::of(compared, agreed)
    }

    /// The entry of `GET /rollouts`: the same keys as a rollout's, with no steps, no weights
    /// (the routes' own apply) and nothing decided, and the `shadow` block.
    pub fn status(&self, key: &str) -> Value {
        json!({
            "name": key,
            "policy_hash": self.policy_hash,
            "release": self.release,
            "archived_releases": 0,
            "state": {"phase": PHASE},
            "gate_deadline": null,
            "pause_deadline": null,
            "gates": [],
            "step": null,
            "steps": [],
            "weights": null,
            "verdicts": [],
            "counters": {},
            "label_rate": null,
            "source": null,
            "decisions": [],
            "shadow": shadow_block(&self.model, self.percentage, self.agreement(), None, Some(self.since)),
        })
    }
}

/// The `shadow` block of a `GET /rollouts` entry: the model, its share of requests, and each
/// arm's agreement with it (`canary` is absent for a shadow-only policy).
pub fn shadow_block(
    model: &str,
    percentage: f64,
    stable: Agreement,
    canary: Option<Agreement>,
    since: Option<f64>,
) -> Value {
    let mut agreement = json!({ "stable": stable });
    if let Some(c) = canary {
        agreement["canary"] = json!(c);
    }
    let mut block = json!({
        "model": model,
        "percentage": percentage,
        "agreement": agreement,
    });
    if let Some(t) = since {
        block["since"] = json!(t);
    }
    block
}
