//! Where a decision is made: the rollouts of the serving CanaryPolicies, fed with the proxy's
//! samples, judged by the pure analyzer, and applied as weights that requests read lock-free.
//!
//! [`Rollouts`] owns one [`Rollout`] per CanaryPolicy. Every transition updates the weights
//! ([`weights::RolloutWeights`]), is saved atomically to the state directory and appended to the
//! audit log ([`persist`]), and moves the rollout gauges. [`driver::RolloutDriver`] is the
//! background service that feeds samples in and lets time pass.

pub mod driver;
pub mod history;
pub mod persist;
pub mod prometheus;
pub mod spec;
pub mod weights;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use augur_analyzer::rollout::{Command, Decision, Rollout, RolloutState};
use augur_analyzer::verdict::Outcome;
use augur_policies::PolicySet;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::route::policy_key;
use crate::sample::RoutedSample;
use persist::{AuditRecord, SavedRollout, StateDir};
use prometheus::PrometheusSource;
use weights::RolloutWeights;

/// Decisions kept in memory per rollout for `GET /rollouts`.
const RECENT_DECISIONS: usize = 20;

/// Why a manual command was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No CanaryPolicy of that name is loaded.
    #[error("no rollout named {0:?}; `augur rollout status` lists them")]
    Unknown(String),
    /// The state machine does not allow the command now.
    #[error(transparent)]
    NotAllowed(#[from] augur_analyzer::rollout::CommandError),
}

struct Managed {
    rollout: Rollout,
    policy_hash: String,
    /// Where the evidence comes from when it is not this proxy's own samples.
    source: Option<PrometheusSource>,
    /// When the source was last read (analyzer clock).
    last_fetch: f64,
    /// The dashboard's time series.
    history: history::History,
}

/// A fetch from a metric source that is due.
pub struct DueFetch {
    /// The rollout.
    pub policy: String,
    /// Where to read.
    pub source: PrometheusSource,
    /// Seconds since the last fetch.
    pub window_s: f64,
}

/// The rollouts of the serving policy set.
pub struct Rollouts {
    inner: Mutex<BTreeMap<String, Managed>>,
    weights: Arc<RolloutWeights>,
    state: Option<StateDir>,
    metrics: Arc<Metrics>,
}

impl Rollouts {
    /// No rollouts yet; [`Rollouts::sync`] creates them from a policy set.
    pub fn new(
        weights: Arc<RolloutWeights>,
        state: Option<StateDir>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Mutex::new(BTreeMap::new()),
            weights,
            state,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Managed>> {
        // A panic while holding the lock leaves consistent data (each method finishes its
        // update before returning), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a rollout for each new CanaryPolicy (resuming a saved one at the same step and
    /// weight) and stops those whose policy is gone. A running rollout keeps the spec it
    /// started with; `retry` after it ends picks up the current policy.
    pub fn sync(&self, set: &PolicySet, policy_hash: &str, now: f64) {
        let mut map = self.lock();
        let keys: Vec<String> = set.canary_policies.iter().map(policy_key).collect();
        map.retain(|k, _| {
            let keep = keys.contains(k);
            if !keep {
                self.weights.remove(k);
                tracing::info!(policy = %k, "CanaryPolicy removed; its rollout stops");
            }
            keep
        });
        for policy in &set.canary_policies {
            let key = policy_key(policy);
            if map.contains_key(&key) {
                continue;
            }
            let source = metric_source(set, policy);
            let (rollout, policy_hash) = match self.state.as_ref().and_then(|s| s.load(&key)) {
                Some(saved) => {
                    tracing::info!(policy = %key, state = ?saved.rollout.state(), "rollout resumed from saved state");
                    (saved.rollout, saved.policy_hash)
                }
                None => {
                    let spec = spec::from_policy(policy);
                    let rollout = spec.rollout();
                    (rollout, policy_hash.to_owned())
                }
            };
            let history = history::History::new(rollout.analysis().interval_s);
            let mut managed = Managed {
                rollout,
                policy_hash,
                source,
                last_fetch: now,
                history,
            };
            let decisions = managed.rollout.tick(now);
            self.applied(&key, &managed, &decisions, "analyzer");
            map.insert(key, managed);
        }
    }

    /// Feeds a sample to the rollout of its policy (unless that rollout reads its evidence from
    /// Prometheus, where this proxy's requests are already counted).
    pub fn observe(&self, s: &RoutedSample) {
        let Some(policy) = s.policy.as_deref() else {
            return;
        };
        if let Some(m) = self.lock().get_mut(policy).filter(|m| m.source.is_none()) {
            m.rollout.observe(&s.sample);
            m.history.observe(&s.sample);
        }
    }

    /// The metric-source reads due at `now` (one per analysis interval and rollout).
    pub fn due_fetches(&self, now: f64) -> Vec<DueFetch> {
        let mut map = self.lock();
        map.iter_mut()
            .filter(|(_, m)| !m.rollout.state().is_terminal())
            .filter_map(|(key, m)| {
                let source = m.source.clone()?;
                let window_s = now - m.last_fetch;
                (window_s >= m.rollout.analysis().interval_s).then(|| {
                    m.last_fetch = now;
                    DueFetch {
                        policy: key.clone(),
                        source,
                        window_s,
                    }
                })
            })
            .collect()
    }

    /// Feeds the samples a metric source returned.
    pub fn feed(&self, policy: &str, samples: &[augur_model::Sample]) {
        if let Some(m) = self.lock().get_mut(policy) {
            for s in samples {
                m.rollout.observe(s);
            }
        }
    }

    /// Counts a failed metric-source read; the analysis then sees no data for the interval.
    pub fn source_failed(&self, policy: &str, error: &prometheus::SourceError) {
        self.metrics
            .rollout
            .source_errors
            .with_label_values(&[policy])
            .inc();
        tracing::warn!(policy, error = %error, "metric source read failed; no data this interval");
    }

    /// Joins a delayed ground-truth label (by request id) in whichever rollout holds it.
    pub fn label(&self, request_id: &str, truth: &str, now: f64) -> bool {
        let mut map = self.lock();
        map.values_mut()
            .any(|m| m.rollout.record_label(request_id, truth, now))
    }

    /// Lets time pass for every rollout.
    pub fn tick(&self, now: f64) {
        let mut map = self.lock();
        for (key, m) in map.iter_mut() {
            let decisions = m.rollout.tick(now);
            if !decisions.is_empty() {
                self.applied(key, m, &decisions, "analyzer");
            }
            m.history.tick(now, &m.rollout, !decisions.is_empty());
            self.export_verdicts(key, &m.rollout);
        }
    }

    /// The last look's verdicts as gauges: outcome, each arm's measured value, and the estimate
    /// (the difference, or the PSI for drift), labelled with the metric's kind for alerts.
    fn export_verdicts(&self, key: &str, r: &Rollout) {
        let g = &self.metrics.rollout;
        for v in r.verdicts() {
            let outcome = match v.outcome {
                Outcome::Pass => 1.0,
                Outcome::Fail { .. } => -1.0,
                Outcome::Inconclusive | Outcome::NoData => 0.0,
            };
            g.verdict
                .with_label_values(&[key, v.metric.as_str()])
                .set(outcome);
            let kind = r
                .analysis()
                .metrics
                .iter()
                .find(|m| m.name == v.metric)
                .map_or("check", |m| kind_label(&m.kind));
            for (arm, value) in [("stable", v.stable), ("canary", v.canary)] {
                if let Some(x) = value {
                    g.value
                        .with_label_values(&[key, v.metric.as_str(), kind, arm])
                        .set(x);
                }
            }
            if let Some(x) = v.estimate {
                g.estimate
                    .with_label_values(&[key, v.metric.as_str(), kind])
                    .set(x);
            }
        }
    }

    /// Runs a manual command (promote, abort, retry, pause, resume).
    pub fn command(
        &self,
        policy: &str,
        command: Command,
        now: f64,
    ) -> Result<Decision, RolloutError> {
        let mut map = self.lock();
        let key = resolve(&map, policy).ok_or_else(|| RolloutError::Unknown(policy.to_owned()))?;
        let m = map
            .get_mut(&key)
            .ok_or_else(|| RolloutError::Unknown(policy.to_owned()))?;
        let decision = m.rollout.command(command, now)?;
        self.applied(&key, m, std::slice::from_ref(&decision), "admin");
        Ok(decision)
    }

    /// Every rollout's state, weights, verdicts and recent decisions, for `GET /rollouts`.
    pub fn status(&self) -> Value {
        let map = self.lock();
        let rollouts: Vec<Value> = map
            .iter()
            .map(|(key, m)| {
                let r = &m.rollout;
                let recent: Vec<&Decision> = r
                    .history()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .take(RECENT_DECISIONS)
                    .collect();
                json!({
                    "name": key,
                    "policy_hash": m.policy_hash,
                    "state": r.state(),
                    "step": r.state().step(),
                    "steps": r.steps(),
                    "weights": r.weights(),
                    "verdicts": r.verdicts(),
                    "counters": r.counters(),
                    "label_rate": r.label_rate(),
                    "decisions": recent,
                })
            })
            .collect();
        json!({ "rollouts": rollouts })
    }

    /// One rollout's time series and its whole decision history (oldest first), for
    /// `GET /rollouts/{name}/history`; `None` when no rollout has that name.
    pub fn history(&self, policy: &str) -> Option<Value> {
        let map = self.lock();
        let key = resolve(&map, policy)?;
        let m = map.get(&key)?;
        let points: Vec<&history::Point> = m.history.points().collect();
        let decisions: Vec<&Decision> = m.rollout.history().collect();
        Some(json!({
            "name": key,
            "period_s": m.history.period_s(),
            "points": points,
            "decisions": decisions,
        }))
    }

    /// After a transition: weights, persistence, audit and gauges.
    fn applied(&self, key: &str, m: &Managed, decisions: &[Decision], actor: &str) {
        let r = &m.rollout;
        let w = r.weights();
        self.weights.set(key, w);
        let g = &self.metrics.rollout;
        g.weight
            .with_label_values(&[key, "stable"])
            .set(i64::from(w.stable));
        g.weight
            .with_label_values(&[key, "canary"])
            .set(i64::from(w.canary));
        if let Some(step) = r.state().step() {
            g.step.with_label_values(&[key]).set(step as i64);
        }
        self.export_verdicts(key, r);
        for d in decisions {
            tracing::info!(policy = key, from = ?d.from, to = ?d.to, weights = ?d.weights, reason = %d.reason, "rollout decision");
            if d.from != d.to {
                match d.to {
                    RolloutState::RolledBack { .. } => g.rollbacks.with_label_values(&[key]).inc(),
                    RolloutState::Promoted => g.deployments.with_label_values(&[key]).inc(),
                    _ => {}
                }
            }
            if let Some(state) = &self.state {
                let record = AuditRecord {
                    policy: key,
                    policy_hash: &m.policy_hash,
                    actor,
                    decision: d,
                };
                if let Err(e) = state.audit(&record) {
                    tracing::error!(policy = key, error = %e, "cannot append to the audit log");
                }
            }
        }
        if let Some(state) = &self.state {
            let saved = SavedRollout {
                policy: key.to_owned(),
                policy_hash: m.policy_hash.clone(),
                rollout: r.clone(),
            };
            if let Err(e) = state.save(&saved) {
                tracing::error!(policy = key, error = %e, "cannot save the rollout state");
            }
        }
    }
}

/// The Prometheus source of a policy whose analysis names one.
fn metric_source(
    set: &PolicySet,
    policy: &augur_policies::CanaryPolicy,
) -> Option<PrometheusSource> {
    let augur_policies::MetricSource::Prometheus { address, query } =
        &policy.analysis.as_ref()?.source
    else {
        return None;
    };
    let ns = &policy.metadata.namespace;
    let version = |d: &augur_policies::DestinationRef| {
        let labels = d.subset.as_deref().and_then(|s| {
            set.destination_rule_for(&d.host, ns)
                .and_then(|dr| dr.subset(s))
        });
        labels
            .and_then(|s| s.labels.get("version").cloned())
            .or_else(|| d.subset.clone())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let service = augur_policies::hosts::fqdn(&policy.stable.host, ns);
    match PrometheusSource::new(
        address,
        query.as_deref(),
        &service,
        &version(&policy.stable),
        &version(&policy.canary),
    ) {
        Ok(source) => Some(source),
        Err(e) => {
            tracing::error!(policy = %policy_key(policy), error = %e, "unusable metric source; the analysis will see no data");
            None
        }
    }
}

/// The closed set of metric kinds, as label values.
fn kind_label(kind: &augur_analyzer::spec::MetricKind) -> &'static str {
    use augur_analyzer::spec::MetricKind as K;
    match kind {
        K::Latency { .. } => "latency",
        K::ErrorRate => "error_rate",
        K::Accuracy => "accuracy",
        K::ShadowAgreement => "shadow_agreement",
        K::PredictionDrift => "prediction_drift",
        K::Calibration => "calibration",
    }
}

/// Finds a rollout by `namespace/name`, or by bare name when it is unique.
fn resolve(map: &BTreeMap<String, Managed>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    let mut matching = map.keys().filter(|k| k.rsplit('/').next() == Some(name));
    let first = matching.next()?;
    matching.next().is_none().then(|| first.clone())
}
