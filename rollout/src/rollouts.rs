//! [`Rollouts`]: one [`Rollout`] per CanaryPolicy and release, fed with samples, labels,
//! commands and time, every transition applied, saved, audited and exported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use augur_analyzer::rollout::{Command, Decision, Rollout, RolloutState, Weights};
use augur_analyzer::verdict::Outcome;
use augur_model::Arm;
use augur_policies::{policy_key, PolicySet};

use crate::agreement::Agreement;
use crate::history;
use crate::metrics::RolloutMetrics;
use crate::persist::{ArchivedRollout, AuditRecord, SavedRollout, StateDir};
use crate::prometheus::{self, PrometheusSource, Reading, Window};
use crate::recording::Recorder;
use crate::release::release_key;
use crate::sample::RoutedSample;
use crate::shadowing::Shadowing;
use crate::sink::{ManagedRoutes, WeightSink};
use crate::spec::{self, RolloutSpec};
use crate::status::{
    ArmAgreement, PolicyState, RolloutHistory, RolloutList, RolloutStatus, ShadowStatus,
    SourceStatus,
};

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
    /// The policy is shadow-only: it has no canary, steps or weights to command.
    #[error("{0} is shadow-only: it scores requests in the shadow model and has no canary, steps or weights to {1}; add canary and steps to the policy to roll the model out")]
    ShadowOnly(String, Command),
}

struct Managed {
    rollout: Rollout,
    policy_hash: String,
    /// The (stable, canary) pair this rollout judges.
    release: String,
    /// The current policy's spec, which a retry after the rollout ended picks up.
    current: RolloutSpec,
    /// Rollouts of earlier releases archived since this process started.
    archived: u64,
    /// The event recording, when `--record-samples` is set.
    recorder: Option<Recorder>,
    /// Where the evidence comes from when it is not this process's own samples.
    source: Option<SourceState>,
    /// The dashboard's time series.
    history: history::History,
    /// The split the driven route's file writes (percent): the live weights while the rollout
    /// waits for `augur rollout start`.
    file_weights: Option<Weights>,
    /// The policy's shadow model (path, percent of requests), if it has one.
    shadow: Option<(String, f64)>,
    /// The policy as loaded: where the header routes' matches are defined.
    policy: Arc<augur_policies::CanaryPolicy>,
}

/// A policy's shadow model: its path and percent of requests.
fn shadow_of(policy: &augur_policies::CanaryPolicy) -> Option<(String, f64)> {
    policy
        .shadow
        .as_ref()
        .map(|s| (s.model.clone(), s.mirror_percentage.value()))
}

/// One rollout's routing, for publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSummary {
    /// The CanaryPolicy, `namespace/name`.
    pub policy: String,
    /// Its weights now (while it waits for `augur rollout start`, its file's).
    pub weights: Weights,
    /// Its phase (`progressing`, `paused`, `promoted`, ...).
    pub phase: String,
    /// The current step (0-based), if any.
    pub step: Option<usize>,
    /// When its last decision was made (analyzer clock, Unix seconds); 0 before any.
    pub changed_at: f64,
    /// The header routes in force, by name (none while it waits for a start).
    pub header_routes: Vec<String>,
    /// The mirror routes in force: name → percent.
    pub mirror_routes: Vec<(String, u8)>,
}

/// A rollout's metric source and how far its evidence has been read.
///
/// A rollout fed by a source runs on the source's clock: it is ticked through each window as
/// the window is fed and stops at the window's end, never at the wall clock. So the
/// triggers see whole windows, decisions are a function of what was read, and a source that
/// does not answer holds the rollout where it is: no look, no trigger, no timed pause, no
/// promotion, until evidence arrives again (commands still act at once).
struct SourceState {
    /// The source, or why the policy's source cannot be used.
    source: Result<PrometheusSource, String>,
    /// The end of the last window fed (aligned to the window).
    read_until: f64,
    /// The window length, whole seconds (the base analysis interval).
    window_s: f64,
    /// Whether a read is under way.
    in_flight: bool,
    /// Failed reads since the last good one.
    failures: u64,
    /// The last failure.
    last_error: Option<String>,
}

impl SourceState {
    fn new(source: Result<PrometheusSource, String>, rollout: &Rollout) -> Self {
        let window_s = window_of(rollout);
        let clock = rollout.clock().map_or(0.0, |c| c as f64);
        SourceState {
            source,
            read_until: (clock / window_s).ceil() * window_s,
            window_s,
            in_flight: false,
            failures: 0,
            last_error: None,
        }
    }
}

/// The window length of a source-fed rollout: its base analysis interval in whole seconds.
fn window_of(rollout: &Rollout) -> f64 {
    let i = rollout.analysis().interval_s;
    if i.is_finite() {
        i.ceil().max(1.0)
    } else {
        60.0
    }
}

/// A read from a metric source that is due.
pub struct DueFetch {
    /// The rollout.
    pub policy: String,
    /// Where to read.
    pub source: PrometheusSource,
    /// The window to read.
    pub window: Window,
}

/// The rollouts of the serving policy set.
pub struct Rollouts {
    inner: Mutex<BTreeMap<String, Managed>>,
    /// Shadow-only policies: no rollout, only stable's agreement with the shadow. Never locked
    /// while `inner` is.
    shadowing: Mutex<BTreeMap<String, Shadowing>>,
    weights: Arc<dyn WeightSink>,
    state: Option<StateDir>,
    metrics: RolloutMetrics,
    record: Option<std::path::PathBuf>,
}

impl Rollouts {
    /// No rollouts yet; [`Rollouts::sync`] creates them from a policy set.
    pub fn new(
        weights: Arc<dyn WeightSink>,
        state: Option<StateDir>,
        metrics: RolloutMetrics,
    ) -> Self {
        Self {
            inner: Mutex::new(BTreeMap::new()),
            shadowing: Mutex::new(BTreeMap::new()),
            weights,
            state,
            metrics,
            record: None,
        }
    }

    /// Records every event each rollout applies to `dir/<namespace>_<name>.samples.jsonl`
    /// ([`recording`]).
    #[must_use]
    pub fn with_recording(mut self, dir: std::path::PathBuf) -> Self {
        self.record = Some(dir);
        self
    }

    /// The weights the rollouts set.
    pub fn weights(&self) -> &Arc<dyn WeightSink> {
        &self.weights
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Managed>> {
        // A panic while holding the lock leaves consistent data (each method finishes its
        // update before returning), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_shadowing(&self) -> MutexGuard<'_, BTreeMap<String, Shadowing>> {
        self.shadowing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one [`Shadowing`] per shadow-only policy of `set`: new ones start counting, kept
    /// ones take the reloaded settings and keep their agreement, others are dropped.
    fn sync_shadowing(&self, set: &PolicySet, policy_hash: &str, now: f64) {
        let mut map = self.lock_shadowing();
        let only: Vec<&augur_policies::CanaryPolicy> = set
            .canary_policies
            .iter()
            .filter(|p| p.is_shadow_only())
            .collect();
        map.retain(|k, _| only.iter().any(|p| policy_key(p) == *k));
        for policy in only {
            let key = policy_key(policy);
            match map.get_mut(&key) {
                Some(s) => s.update(policy, policy_hash),
                None => {
                    tracing::info!(policy = %key, "shadow-only policy: scoring in the shadow, no rollout");
                    let release = release_key(set, policy);
                    map.insert(key, Shadowing::new(policy, policy_hash, release, now));
                }
            }
        }
    }

    /// Starts a rollout for each new CanaryPolicy (resuming a saved one of the same release at the
    /// same step and weight) and stops those whose policy is gone. A running rollout keeps the
    /// spec it started with; `retry` after it ends picks up the current policy. When a policy's
    /// (stable, canary) pair changes, its rollout is archived and a new one starts at step 1;
    /// state saved for another pair is archived, never applied.
    ///
    /// Shadow-only policies get no rollout: only their agreement is kept ([`Shadowing`]).
    pub fn sync(&self, set: &PolicySet, policy_hash: &str, now: f64) {
        self.sync_shadowing(set, policy_hash, now);
        let mut map = self.lock();
        let rolled = || set.canary_policies.iter().filter(|p| !p.is_shadow_only());
        let keys: Vec<String> = rolled().map(policy_key).collect();
        map.retain(|k, _| {
            let keep = keys.contains(k);
            if !keep {
                self.weights.remove(k);
                tracing::info!(policy = %k, "CanaryPolicy removed; its rollout stops");
            }
            keep
        });
        for policy in rolled() {
            let key = policy_key(policy);
            let release = release_key(set, policy);
            let current = spec::from_policy(policy);
            let mut archived = 0;
            let file_weights = file_weights(set, policy);
            if let Some(m) = map.get_mut(&key) {
                m.current = current.clone();
                m.file_weights = file_weights;
                m.shadow = shadow_of(policy);
                m.policy = Arc::new(policy.clone());
                if m.release == release {
                    // The source may have changed (address, lag, matchers): read on from where
                    // the evidence stands.
                    m.source = match (m.source.take(), metric_source(policy)) {
                        (Some(mut state), Some(source)) => {
                            state.source = source;
                            Some(state)
                        }
                        (None, Some(source)) => Some(SourceState::new(source, &m.rollout)),
                        (_, None) => None,
                    };
                    self.start_if_immediate(&key, m, now);
                    continue;
                }
                let why = format!("release changed to {release}");
                self.archive(
                    &key,
                    &m.rollout,
                    Some(&m.release),
                    &m.policy_hash,
                    &why,
                    now,
                );
                archived = m.archived + 1;
                map.remove(&key);
            }
            let source = metric_source(policy);
            let saved = self.state.as_ref().and_then(|s| s.load(&key));
            let resumable = saved.filter(|saved| {
                // State saved before releases were tracked is resumed only for the same files.
                let same = match &saved.release {
                    Some(r) => *r == release,
                    None => saved.policy_hash == policy_hash,
                };
                if !same {
                    let why = format!("saved for another release; now {release}");
                    self.archive(
                        &key,
                        &saved.rollout,
                        saved.release.as_deref(),
                        &saved.policy_hash,
                        &why,
                        now,
                    );
                    archived += 1;
                }
                same
            });
            let (rollout, policy_hash) = match resumable {
                Some(saved) => {
                    tracing::info!(policy = %key, state = %saved.rollout.state(), "rollout resumed from saved state");
                    (saved.rollout, saved.policy_hash)
                }
                None => (current.clone().rollout(), policy_hash.to_owned()),
            };
            let history = history::History::new(rollout.analysis().interval_s);
            let recorder = self.record.as_ref().and_then(|dir| {
                Recorder::open(dir, &key)
                    .map_err(
                        |e| tracing::error!(policy = %key, error = %e, "cannot record samples"),
                    )
                    .ok()
            });
            let mut managed = Managed {
                rollout,
                policy_hash,
                release,
                current,
                archived,
                recorder,
                source: None,
                history,
                file_weights,
                shadow: shadow_of(policy),
                policy: Arc::new(policy.clone()),
            };
            let decisions = managed.tick(now);
            // Evidence is read from the rollout's clock on (a resumed rollout re-reads what
            // it had not saved, from the same aligned windows).
            managed.source = source.map(|s| SourceState::new(s, &managed.rollout));
            self.applied(&key, &managed, &decisions, "analyzer");
            self.start_if_immediate(&key, &mut managed, now);
            map.insert(key, managed);
        }
    }

    /// Starts a Pending rollout whose policy now says `startOn: immediately` (edited while it
    /// waited, or saved Pending before the edit): the policy is the command.
    fn start_if_immediate(&self, key: &str, m: &mut Managed, now: f64) {
        if m.current.start_on_command || *m.rollout.state() != RolloutState::Pending {
            return;
        }
        let ticked = m.tick(now);
        if !ticked.is_empty() {
            self.applied(key, m, &ticked, "analyzer");
        }
        if let Ok(decision) = m.rollout.command(Command::Start, now) {
            if let Some(r) = &mut m.recorder {
                r.command(now, Command::Start);
            }
            self.applied(key, m, std::slice::from_ref(&decision), "policy");
        }
    }

    /// Archives a rollout of an earlier release (history file, log) and forgets its state.
    fn archive(
        &self,
        key: &str,
        rollout: &Rollout,
        release: Option<&str>,
        policy_hash: &str,
        why: &str,
        now: f64,
    ) {
        tracing::info!(policy = %key, release = release.unwrap_or("not recorded"), state = %rollout.state(), reason = %why, "rollout archived; a new one starts at step 1");
        let Some(state) = &self.state else {
            return;
        };
        let record = ArchivedRollout {
            archived_at: now,
            reason: why,
            policy: key,
            release,
            policy_hash,
            state: rollout.state(),
            weights: rollout.weights(),
            gates: rollout.gates().collect(),
            decisions: rollout.history().collect(),
        };
        if let Err(e) = state.archive(&record).and_then(|()| state.forget(key)) {
            tracing::error!(policy = key, error = %e, "cannot archive the rollout of the earlier release");
        }
    }

    /// Feeds a sample to the rollout of its policy (unless that rollout reads its evidence from
    /// Prometheus, where this proxy's requests are already counted), after ticking the rollout to
    /// the sample's time.
    pub fn observe(&self, s: &RoutedSample) {
        let Some(policy) = s.policy.as_deref() else {
            return;
        };
        let mut map = self.lock();
        let Some(m) = map.get_mut(policy) else {
            drop(map);
            if let Some(shadow) = self.lock_shadowing().get_mut(policy) {
                shadow.observe(&s.sample);
            }
            return;
        };
        if m.source.is_some() {
            return;
        }
        let decisions = m.tick(s.sample.t);
        if !decisions.is_empty() {
            self.applied(policy, m, &decisions, "analyzer");
        }
        if let Some(r) = &mut m.recorder {
            r.sample(&s.sample);
        }
        m.rollout.observe(&s.sample);
        m.history.observe(&s.sample);
    }

    /// The metric-source reads due at `now`: per source-fed rollout with no read under way,
    /// the next window after its evidence, once that window ends `scrapeLag` before `now`.
    /// After an outage every missed window is read in turn, one per call (the driver calls once
    /// a second), so the rollout decides as if the source had never been away.
    pub fn due_fetches(&self, now: f64) -> Vec<DueFetch> {
        let mut map = self.lock();
        map.iter_mut()
            .filter(|(_, m)| {
                // A rollout not started takes no evidence: nothing to read for it yet.
                let state = m.rollout.state();
                !state.is_terminal() && *state != RolloutState::Pending
            })
            .filter_map(|(key, m)| {
                let clock = m.rollout.clock().map_or(0.0, |c| c as f64);
                let state = m.source.as_mut().filter(|s| !s.in_flight)?;
                let source = state.source.as_ref().ok()?.clone();
                let w = state.window_s;
                let latest = prometheus::aligned_end(now, source.scrape_lag_s(), w);
                // Never before the rollout's clock (a command moved it on: what came before is
                // not evidence of the step it is in now).
                let from = state.read_until.max((clock / w).ceil() * w);
                let to = from + w;
                (to <= latest).then(|| {
                    state.in_flight = true;
                    DueFetch {
                        policy: key.clone(),
                        source,
                        window: Window::ending(to, w),
                    }
                })
            })
            .collect()
    }

    /// Feeds a window a metric source returned: the rollout is ticked through the window with
    /// its samples (each after ticking to its time), then to the window's end.
    pub fn feed(&self, policy: &str, reading: &Reading) {
        let mut map = self.lock();
        let Some(m) = map.get_mut(policy) else {
            return;
        };
        let Some(state) = m.source.as_mut() else {
            return;
        };
        state.in_flight = false;
        let clock = m.rollout.clock().map_or(0.0, |c| c as f64);
        let w = state.window_s;
        if reading.window.from < state.read_until.max((clock / w).ceil() * w) {
            // Read before a command moved the rollout's clock on: not evidence of its step now.
            return;
        }
        if state.failures > 0 {
            tracing::info!(
                policy,
                failures = state.failures,
                "metric source answers again"
            );
        }
        state.failures = 0;
        state.last_error = None;
        state.read_until = reading.window.to;
        let mut decisions = m.tick(reading.window.from);
        for tally in &reading.tallies {
            if let Some(r) = &mut m.recorder {
                r.tally(tally);
            }
            m.rollout.record_tally(tally);
        }
        for s in &reading.samples {
            decisions.extend(m.tick(s.t));
            if let Some(r) = &mut m.recorder {
                r.sample(s);
            }
            m.rollout.observe(s);
            m.history.observe(s);
        }
        decisions.extend(m.tick(reading.window.to));
        if !decisions.is_empty() {
            self.applied(policy, m, &decisions, "analyzer");
        }
        self.metrics
            .source_read_until
            .with_label_values(&[policy])
            .set(reading.window.to);
    }

    /// Counts a failed read of `window`; it is read again at the next tick, and the rollout
    /// holds meanwhile.
    pub fn source_failed(&self, policy: &str, window: Window, error: &prometheus::SourceError) {
        self.metrics
            .source_errors
            .with_label_values(&[policy])
            .inc();
        let mut map = self.lock();
        let Some(state) = map.get_mut(policy).and_then(|m| m.source.as_mut()) else {
            return;
        };
        state.in_flight = false;
        state.failures += 1;
        state.last_error = Some(error.to_string());
        // The first failure, then once a minute of retries.
        if state.failures % 60 == 1 {
            tracing::warn!(policy, error = %error, window_end = window.to, failures = state.failures, "metric source read failed; the rollout holds until it answers");
        }
    }

    /// Joins a delayed ground-truth label (by request id) in whichever rollout holds it, after
    /// ticking that rollout to `now`.
    pub fn label(&self, request_id: &str, truth: &str, now: f64) -> bool {
        let mut map = self.lock();
        let Some((key, m)) = map
            .iter_mut()
            .find(|(_, m)| m.rollout.awaits_label(request_id))
        else {
            return false;
        };
        let decisions = m.tick(now);
        if !decisions.is_empty() {
            self.applied(key, m, &decisions, "analyzer");
        }
        if let Some(r) = &mut m.recorder {
            r.label(now, request_id, truth);
        }
        m.rollout.record_label(request_id, truth, now)
    }

    /// Lets time pass for every rollout (the driver's once-a-second timer); a source-fed
    /// rollout keeps its source's clock ([`SourceState`]).
    pub fn tick(&self, now: f64) {
        let mut map = self.lock();
        for (key, m) in map.iter_mut() {
            let before = m.rollout.clock();
            let decisions = if m.source.is_some() {
                Vec::new()
            } else {
                m.rollout.tick(now)
            };
            if let Some(r) = &mut m.recorder {
                if m.rollout.clock() != before {
                    r.tick(now);
                }
                r.flush();
            }
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
        let g = &self.metrics;
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
                .map_or("check", |m| m.kind.as_str());
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

    /// Runs a manual command (start, promote, abort, retry, pause, resume).
    pub fn command(
        &self,
        policy: &str,
        command: Command,
        now: f64,
    ) -> Result<Decision, RolloutError> {
        let mut map = self.lock();
        let Some(key) = resolve(&map, policy) else {
            drop(map);
            return Err(match resolve(&self.lock_shadowing(), policy) {
                Some(key) => RolloutError::ShadowOnly(key, command),
                None => RolloutError::Unknown(policy.to_owned()),
            });
        };
        let m = map
            .get_mut(&key)
            .ok_or_else(|| RolloutError::Unknown(policy.to_owned()))?;
        let ticked = m.tick(now);
        if !ticked.is_empty() {
            self.applied(&key, m, &ticked, "analyzer");
        }
        if command == Command::Retry && m.rollout.state().is_terminal() {
            let c = m.current.clone();
            m.rollout
                .replace_spec(c.analysis, c.steps, c.triggers, c.gates);
            for (step, seconds) in c.watches {
                m.rollout.set_gate_watch(step, seconds);
            }
        }
        let decision = m.rollout.command(command, now)?;
        if let Some(r) = &mut m.recorder {
            r.command(now, command);
        }
        self.applied(&key, m, std::slice::from_ref(&decision), "admin");
        Ok(decision)
    }

    /// Every rollout's state, weights, verdicts and recent decisions, for `GET /rollouts`.
    /// Shadow-only policies are listed among them with the phase `shadowing`; every entry
    /// whose policy has a shadow model shows each arm's agreement with it (`shadow`), whatever
    /// the canary's weight.
    pub fn status(&self) -> RolloutList {
        let map = self.lock();
        let mut rollouts: Vec<RolloutStatus> = map
            .iter()
            .map(|(key, m)| {
                let r = &m.rollout;
                let all: Vec<&Decision> = r.history().collect();
                let decisions = all
                    .into_iter()
                    .rev()
                    .take(RECENT_DECISIONS)
                    .cloned()
                    .collect();
                RolloutStatus {
                    name: key.clone(),
                    policy_hash: m.policy_hash.clone(),
                    release: m.release.clone(),
                    archived_releases: m.archived,
                    state: PolicyState::Rollout(r.state().clone()),
                    gate_deadline: r.gate_deadline(),
                    pause_deadline: r.pause_deadline(),
                    watch_deadline: r.watch_deadline(),
                    gates: r.gates().cloned().collect(),
                    step: r.state().step(),
                    steps: r.steps().to_vec(),
                    weights: Some(m.live_weights()),
                    verdicts: r.verdicts().to_vec(),
                    counters: r.counters().clone(),
                    label_rate: r.label_rate(),
                    source: m.source.as_ref().map(|s| SourceStatus {
                        address: s
                            .source
                            .as_ref()
                            .map_or_else(|e| e.clone(), PrometheusSource::address),
                        evidence_until: s.read_until,
                        window_s: s.window_s,
                        failures: s.failures,
                        last_error: s
                            .last_error
                            .clone()
                            .or_else(|| s.source.as_ref().err().cloned()),
                    }),
                    decisions,
                    shadow: m.shadow.as_ref().map(|(model, percentage)| {
                        // The rollout's evidence (fleet-wide when a source feeds it); before
                        // `start` it takes none, and this process's own join shows stable's
                        // agreement meanwhile.
                        let counts = |arm: Arm| {
                            if *r.state() == RolloutState::Pending {
                                m.history.agreement(arm)
                            } else {
                                let e = r.evidence();
                                let a = if arm == Arm::Canary {
                                    &e.canary
                                } else {
                                    &e.stable
                                };
                                (a.compared, a.agreed)
                            }
                        };
                        let agreement = |arm| {
                            let (compared, agreed) = counts(arm);
                            Agreement::of(compared, agreed)
                        };
                        ShadowStatus {
                            model: model.clone(),
                            percentage: *percentage,
                            agreement: ArmAgreement {
                                stable: agreement(Arm::Stable),
                                canary: Some(agreement(Arm::Canary)),
                            },
                            since: None,
                        }
                    }),
                }
            })
            .collect();
        drop(map);
        rollouts.extend(self.lock_shadowing().iter().map(|(key, s)| s.status(key)));
        rollouts.sort_by(|a, b| a.name.cmp(&b.name));
        RolloutList { rollouts }
    }

    /// Every rollout's routing as it stands: what the controller publishes to the sidecars.
    pub fn summaries(&self) -> Vec<RolloutSummary> {
        let map = self.lock();
        map.iter()
            .map(|(key, m)| {
                let r = &m.rollout;
                let phase = r.state().phase().to_owned();
                let routes = m.managed_routes();
                RolloutSummary {
                    policy: key.clone(),
                    weights: m.live_weights(),
                    phase,
                    step: r.state().step(),
                    changed_at: r.history().last().map_or(0.0, |d| d.time),
                    header_routes: routes.headers.into_iter().map(|h| h.name).collect(),
                    mirror_routes: routes.mirrors,
                }
            })
            .collect()
    }

    /// One rollout's time series and its whole decision history (oldest first), for
    /// `GET /rollouts/{name}/history`; `None` when no rollout has that name.
    /// A shadow-only policy has no points and no decisions.
    pub fn history(&self, policy: &str) -> Option<RolloutHistory> {
        let map = self.lock();
        let Some(key) = resolve(&map, policy) else {
            drop(map);
            let shadowing = self.lock_shadowing();
            let key = resolve(&shadowing, policy)?;
            return Some(RolloutHistory {
                name: key,
                period_s: None,
                points: Vec::new(),
                decisions: Vec::new(),
            });
        };
        let m = map.get(&key)?;
        Some(RolloutHistory {
            name: key,
            period_s: Some(m.history.period_s()),
            points: m.history.points().cloned().collect(),
            decisions: m.rollout.history().cloned().collect(),
        })
    }

    /// After a transition: weights, persistence, audit and gauges.
    fn applied(&self, key: &str, m: &Managed, decisions: &[Decision], actor: &str) {
        let r = &m.rollout;
        let w = r.weights();
        let g = &self.metrics;
        if *r.state() == RolloutState::Pending {
            // Not started: the routes keep their VirtualService weights.
            self.weights.remove(key);
        } else {
            self.weights.set(key, w);
            g.weight
                .with_label_values(&[key, "stable"])
                .set(i64::from(w.stable));
            g.weight
                .with_label_values(&[key, "canary"])
                .set(i64::from(w.canary));
        }
        self.weights.set_routes(key, &m.managed_routes());
        if let Some(step) = r.state().step() {
            g.step.with_label_values(&[key]).set(step as i64);
        }
        self.export_verdicts(key, r);
        for d in decisions {
            // Words, steps from 1, as `augur rollout status` (JSON and the audit log keep the index).
            tracing::info!(policy = key, from = %d.from, to = %d.to, weights = %d.weights, reason = %d.reason, "rollout decision");
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
                    release: &m.release,
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
                release: Some(m.release.clone()),
                rollout: r.clone(),
            };
            if let Err(e) = state.save(&saved) {
                tracing::error!(policy = key, error = %e, "cannot save the rollout state");
            }
        }
    }
}

impl Managed {
    /// The header and mirror routes traffic follows: the rollout's (none while it waits for a
    /// start), with the header routes' matches from the policy.
    fn managed_routes(&self) -> ManagedRoutes {
        let r = &self.rollout;
        if *r.state() == RolloutState::Pending {
            return ManagedRoutes::default();
        }
        let headers: Vec<&str> = r.header_routes().collect();
        let mirrors: Vec<(String, u8)> = r
            .mirror_routes()
            .iter()
            .map(|(name, percent)| (name.clone(), *percent))
            .collect();
        spec::managed_routes(&self.policy, r.state().step(), &headers, &mirrors)
    }

    /// The weights traffic follows: the rollout's, or the file's while it waits for a start.
    fn live_weights(&self) -> Weights {
        match (self.rollout.state(), self.file_weights) {
            (RolloutState::Pending, Some(file)) => file,
            _ => self.rollout.weights(),
        }
    }

    /// Ticks the rollout to `now`, recording the tick when it moved the clock.
    fn tick(&mut self, now: f64) -> Vec<Decision> {
        let before = self.rollout.clock();
        let decisions = self.rollout.tick(now);
        if self.rollout.clock() != before {
            if let Some(r) = &mut self.recorder {
                r.tick(now);
            }
        }
        decisions
    }
}

/// The Prometheus source of a policy whose analysis names one: the sidecars' evidence of this
/// policy (`policy="namespace/name"`). An address the loader would refuse gives the reason,
/// and the rollout holds (it never falls back to this process's own samples).
fn metric_source(
    policy: &augur_policies::CanaryPolicy,
) -> Option<Result<PrometheusSource, String>> {
    let augur_policies::MetricSource::Prometheus {
        address,
        query,
        scrape_lag,
    } = &policy.analysis.as_ref()?.source
    else {
        return None;
    };
    let key = policy_key(policy);
    Some(
        PrometheusSource::new(address, query.as_deref(), &key, *scrape_lag).map_err(|e| {
            tracing::error!(policy = %key, error = %e, "unusable metric source; the rollout holds");
            e.to_string()
        }),
    )
}

/// The split the file of a policy's first driven route writes, in percent (`None` when the
/// route is missing or sends nothing to either side).
fn file_weights(set: &PolicySet, policy: &augur_policies::CanaryPolicy) -> Option<Weights> {
    let route = augur_policies::driven::routes_of(set, policy)
        .into_iter()
        .next()?;
    let total = route.stable_weight + route.canary_weight;
    (total > 0).then(|| {
        Weights::canary((f64::from(route.canary_weight) * 100.0 / f64::from(total)).round() as u8)
    })
}

/// Finds a rollout by `namespace/name`, or by bare name when it is unique.
fn resolve<T>(map: &BTreeMap<String, T>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    let mut matching = map.keys().filter(|k| k.rsplit('/').next() == Some(name));
    let first = matching.next()?;
    matching.next().is_none().then(|| first.clone())
}
