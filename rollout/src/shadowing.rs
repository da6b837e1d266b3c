//! Shadow-only policies ([`augur_policies::Strategy::ShadowOnly`]): no canary, no steps, no
//! weights. [`Shadowing`] is what `Rollouts` keeps for one: the shadow's settings and stable's
//! agreement with it, shown in `GET /rollouts` beside the rollouts with the phase `shadowing`.

use augur_model::{Arm, Sample};
use augur_policies::CanaryPolicy;
use std::collections::BTreeMap;

use crate::agreement::{Agreement, AgreementJoin};
use crate::status::{ArmAgreement, PolicyState, RolloutStatus, ShadowOnly, ShadowStatus};

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

    /// The entry of `GET /rollouts`: the same fields as a rollout's, with no steps, no weights
    /// (the routes' own apply) and nothing decided, and the shadow's agreement.
    pub fn status(&self, key: &str) -> RolloutStatus {
        RolloutStatus {
            name: key.to_owned(),
            policy_hash: self.policy_hash.clone(),
            release: self.release.clone(),
            archived_releases: 0,
            state: PolicyState::ShadowOnly(ShadowOnly::Shadowing),
            gate_deadline: None,
            pause_deadline: None,
            watch_deadline: None,
            gates: Vec::new(),
            step: None,
            steps: Vec::new(),
            weights: None,
            verdicts: Vec::new(),
            counters: BTreeMap::new(),
            label_rate: None,
            source: None,
            decisions: Vec::new(),
            shadow: Some(ShadowStatus {
                model: self.model.clone(),
                percentage: self.percentage,
                agreement: ArmAgreement {
                    stable: self.agreement(),
                    canary: None,
                },
                since: Some(self.since),
            }),
        }
    }
}
