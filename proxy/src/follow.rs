//! Following `augur controller` (`--controller`): a sidecar of a fleet decides nothing itself;
//! it applies the routing the controller pushes.
//!
//! - Before the listeners open, [`Follower::initial_sync`] fetches the current state (as a
//!   resumed rollout is applied before them in single-proxy mode).
//! - [`Follower::run`] then holds a watch stream open and applies every state pushed. The
//!   controller sends a heartbeat line every second; three seconds without a line, or any
//!   error, and the sidecar reconnects, with back-off from 100 ms to 500 ms, so a sidecar cut off
//!   converges within a second of the link coming back.
//! - Fail static: without the controller a sidecar keeps its last weights, reports how stale
//!   they are (`augur_controller_staleness_seconds`, `/controller`, `/ready`), and never falls
//!   back to deciding alone.
//! - A state is applied per rollout (its weights, and its managed routes: the header routes
//!   it names, with the matches of this sidecar's own policy file, and its mirror routes), and
//!   only when the sidecar holds the same version of the policy
//!   ([`augur_policies::fingerprint`]); a malformed or oversized push, or weights that
//!   do not add up to 100, leave the last good state in place and are counted.
//! - When its policy files are reloaded (a ConfigMap update caught up), the sidecar applies the
//!   last state pushed to the rollouts it now holds in the controller's version, and, if its
//!   fingerprints changed, subscribes again so the controller sees them: it neither waits for
//!   the next decision nor stays listed as lagging. The check runs every [`POLICY_CHECK`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur_analyzer::rollout::Weights;
use augur_model::fleet::{FleetState, LabelPush, Push, RolloutRouting, FLEET_PROTOCOL};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::policy_store::PolicyStore;
use crate::weights::RolloutWeights;

/// The longest line a push may be; a longer one is refused (and the connection dropped).
pub const MAX_PUSH_BYTES: usize = 1024 * 1024;
/// Without any line for this long, the connection is taken for lost.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the follower looks for reloaded policy files (and updates its staleness gauge).
pub const POLICY_CHECK: Duration = Duration::from_millis(250);
/// Back-off between reconnections: from this...
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// ...doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Why a push or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The controller could not be reached.
    #[error("cannot reach the controller: {0}")]
    Connect(String),
    /// The controller refused the token.
    #[error("the controller refused the token (401)")]
    Unauthorized,
    /// The controller answered something else than a state.
    #[error("the controller answered {0}")]
    Status(u16),
    /// A push was not a state.
    #[error("malformed push: {0}")]
    Malformed(String),
    /// A push was longer than [`MAX_PUSH_BYTES`].
    #[error("push over {MAX_PUSH_BYTES} bytes")]
    Oversized,
    /// A push of another protocol version.
    #[error("push of protocol {0}, this sidecar speaks {FLEET_PROTOCOL}")]
    Protocol(u32),
    /// A rollout's weights do not add up to 100.
    #[error("{policy}: weights {stable} + {canary} do not add up to 100")]
    Weights {
        /// The policy.
        policy: String,
        /// Stable's weight.
        stable: u8,
        /// Canary's weight.
        canary: u8,
    },
    /// No line within [`DEAD_AFTER`].
    #[error("no heartbeat for {0:?}")]
    Silent(Duration),
}

impl FollowError {
    /// The `reason` label of `augur_controller_push_errors_total`.
    fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::Silent(_) => "connection",
            Self::Unauthorized => "unauthorized",
            Self::Status(_) => "status",
            Self::Malformed(_) => "malformed",
            Self::Oversized => "oversized",
            Self::Protocol(_) => "protocol",
            Self::Weights { .. } => "weights",
        }
    }
}

/// What a sidecar knows of its controller, for `/controller`, `/ready` and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowView {
    /// The controller's address.
    pub controller: String,
    /// Whether a watch stream is open now.
    pub connected: bool,
    /// Seconds since the last line from the controller (`None`: never reached).
    pub stale_seconds: Option<f64>,
    /// The controller process and version of the last state applied.
    pub applied: Option<(String, u64)>,
    /// Policies whose routing this sidecar holds back because its version of the policy
    /// differs from the controller's: policy → (controller's hash, ours).
    pub mismatched: BTreeMap<String, (String, String)>,
    /// The last error, if the last push or connection failed.
    pub last_error: Option<String>,
    /// Whether the controller's state was applied before the listeners opened (else the
    /// first requests were served at the policy files' weights).
    pub synced_before_listening: bool,
}

impl FollowView {
    /// One line for `/ready`: the link, the last state applied, how stale, and what went wrong.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "controller {}: {}",
            self.controller,
            if self.connected {
                "connected"
            } else {
                "disconnected"
            }
        );
        match &self.applied {
            Some((controller, version)) => {
                out.push_str(&format!(", state {version} of {controller} applied"));
            }
            None => out.push_str(", no state applied yet (the policy files' weights serve)"),
        }
        if let Some(stale) = self.stale_seconds {
            out.push_str(&format!(", last heard {stale:.1}s ago"));
        }
        if !self.mismatched.is_empty() {
            let names: Vec<&str> = self.mismatched.keys().map(String::as_str).collect();
            out.push_str(&format!(
                ", holding {} at its last routing (another policy version than the controller's)",
                names.join(", ")
            ));
        }
        if let Some(e) = &self.last_error {
            out.push_str(&format!(", last error: {e}"));
        }
        out.push('\n');
        out
    }
}

#[derive(Debug, Default)]
struct Status {
    connected: bool,
    last_contact: Option<Instant>,
    applied: Option<(String, u64)>,
    mismatched: BTreeMap<String, (String, String)>,
    last_error: Option<String>,
    synced_before_listening: bool,
    /// The last good state the controller sent, applied again when the policies reload.
    last_state: Option<Arc<FleetState>>,
    /// The hash of the policy files the last check saw.
    policies_seen: Option<String>,
    /// The fingerprints sent with the open subscription.
    reported: Option<String>,
}

/// The metrics of following a controller.
#[derive(Debug, Clone)]
pub struct FollowMetrics {
    connected: prometheus::IntGauge,
    staleness: prometheus::Gauge,
    version: prometheus::IntGauge,
    updates: prometheus::IntCounter,
    errors: prometheus::IntCounterVec,
    mismatched: prometheus::IntGaugeVec,
}

impl FollowMetrics {
    /// Creates and registers them.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let connected = prometheus::IntGauge::new(
            "augur_controller_connected",
            "1 while a watch stream to the controller is open.",
        )?;
        let staleness = prometheus::Gauge::new(
            "augur_controller_staleness_seconds",
            "Seconds since the controller was last heard from (the routing is that old at most).",
        )?;
        let version = prometheus::IntGauge::new(
            "augur_controller_state_version",
            "The version of the controller's state last applied.",
        )?;
        let updates = prometheus::IntCounter::new(
            "augur_controller_updates_total",
            "States pushed by the controller and applied.",
        )?;
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "augur_controller_push_errors_total",
                "Pushes refused and connections lost, by reason; the last good state stays.",
            ),
            &["reason"],
        )?;
        let mismatched = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "augur_controller_policy_mismatch",
                "1 while this sidecar holds another version of the policy than the controller.",
            ),
            &["policy"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(staleness.clone()))?;
        registry.register(Box::new(version.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(mismatched.clone()))?;
        Ok(Self {
            connected,
            staleness,
            version,
            updates,
            errors,
            mismatched,
        })
    }
}

/// A sidecar's link to its controller.
pub struct Follower {
    authority: String,
    token: Option<String>,
    node: String,
    store: Arc<PolicyStore>,
    weights: Arc<RolloutWeights>,
    status: Mutex<Status>,
    metrics: FollowMetrics,
    evidence: Option<Arc<crate::evidence::Evidence>>,
    weight_gauge: Option<prometheus::IntGaugeVec>,
}

impl Follower {
    /// A follower of the controller at `authority` (`host:port`), presenting `token` and
    /// calling itself `node`, that sets `weights` for the policies of `store`.
    pub fn new(
        authority: String,
        token: Option<String>,
        node: String,
        store: Arc<PolicyStore>,
        weights: Arc<RolloutWeights>,
        metrics: FollowMetrics,
    ) -> Self {
        Self {
            authority,
            token,
            node,
            store,
            weights,
            status: Mutex::new(Status::default()),
            metrics,
            evidence: None,
            weight_gauge: None,
        }
    }

    /// Shows the weights applied in `gauge` (`augur_rollout_weight{policy,arm}`, as a proxy
    /// running its own rollouts does), so that dashboards read either mode alike.
    #[must_use]
    pub fn with_weight_gauge(mut self, gauge: prometheus::IntGaugeVec) -> Self {
        self.weight_gauge = Some(gauge);
        self
    }

    /// Joins the labels the controller forwards to the predictions in `evidence`.
    #[must_use]
    pub fn with_evidence(mut self, evidence: Arc<crate::evidence::Evidence>) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// The controller's address.
    pub fn controller(&self) -> &str {
        &self.authority
    }

    /// Joins forwarded labels to the predictions this sidecar holds; returns how many.
    fn join_labels(&self, push: &LabelPush) -> usize {
        let Some(evidence) = &self.evidence else {
            return 0;
        };
        let now = crate::sample::now();
        push.labels
            .iter()
            .filter(|l| evidence.label(&l.request_id, &l.label, now))
            .count()
    }

    /// What the sidecar knows of its controller now.
    pub fn view(&self) -> FollowView {
        let Ok(s) = self.status.lock() else {
            return FollowView::default();
        };
        FollowView {
            controller: self.authority.clone(),
            connected: s.connected,
            stale_seconds: s.last_contact.map(|t| t.elapsed().as_secs_f64()),
            applied: s.applied.clone(),
            mismatched: s.mismatched.clone(),
            last_error: s.last_error.clone(),
            synced_before_listening: s.synced_before_listening,
        }
    }

    /// The policy fingerprints this sidecar holds, `namespace/name=hash`, comma-separated.
    fn fingerprints(&self) -> String {
        let snapshot = self.store.snapshot();
        let set = &snapshot.loaded.set;
        set.canary_policies
            .iter()
            .map(|p| {
                format!(
                    "{}/{}={}",
                    p.metadata.namespace,
                    p.metadata.name,
                    augur_policies::fingerprint::rollout_fingerprint(set, p)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Applies a state: each rollout whose policy version this sidecar holds gets its weights;
    /// the others keep theirs and are reported. Nothing is applied from a state with an error.
    pub fn apply(&self, state: &FleetState) -> Result<(), FollowError> {
        if state.protocol != FLEET_PROTOCOL {
            return Err(FollowError::Protocol(state.protocol));
        }
        if let Some(bad) = state
            .rollouts
            .iter()
            .find(|r| u16::from(r.stable_weight) + u16::from(r.canary_weight) != 100)
        {
            return Err(FollowError::Weights {
                policy: bad.policy.clone(),
                stable: bad.stable_weight,
                canary: bad.canary_weight,
            });
        }
        if let Some((bad, m)) = state.rollouts.iter().find_map(|r| {
            r.mirror_routes
                .iter()
                .find(|m| m.percent > 100)
                .map(|m| (r, m))
        }) {
            return Err(FollowError::Malformed(format!(
                "{}: mirror route {} at {}%",
                bad.policy, m.name, m.percent
            )));
        }
        let mismatched = self.route(state);
        self.metrics
            .version
            .set(i64::try_from(state.version).unwrap_or(i64::MAX));
        self.metrics.updates.inc();
        if let Ok(mut s) = self.status.lock() {
            s.applied = Some((state.controller.clone(), state.version));
            s.mismatched = mismatched;
            s.last_error = None;
            s.last_state = Some(Arc::new(state.clone()));
        }
        Ok(())
    }

    /// Sets the weights and managed routes of every rollout of `state` whose policy version
    /// this sidecar holds; returns the others: policy → (controller's hash, ours).
    fn route(&self, state: &FleetState) -> BTreeMap<String, (String, String)> {
        let snapshot = self.store.snapshot();
        let set = &snapshot.loaded.set;
        let mut mismatched = BTreeMap::new();
        for r in &state.rollouts {
            let policy = set
                .canary_policies
                .iter()
                .find(|p| format!("{}/{}", p.metadata.namespace, p.metadata.name) == r.policy);
            let ours = policy.map(|p| augur_policies::fingerprint::rollout_fingerprint(set, p));
            match (ours, policy) {
                (Some(hash), Some(policy)) if hash == r.policy_hash => {
                    self.weights.set(&r.policy, weights_of(r));
                    self.weights
                        .set_routes(&r.policy, &managed_routes(policy, r));
                    if let Some(g) = &self.weight_gauge {
                        g.with_label_values(&[&r.policy, "stable"])
                            .set(i64::from(r.stable_weight));
                        g.with_label_values(&[&r.policy, "canary"])
                            .set(i64::from(r.canary_weight));
                    }
                    self.metrics
                        .mismatched
                        .with_label_values(&[&r.policy])
                        .set(0);
                }
                (Some(hash), _) => {
                    mismatched.insert(r.policy.clone(), (r.policy_hash.clone(), hash));
                    self.metrics
                        .mismatched
                        .with_label_values(&[&r.policy])
                        .set(1);
                }
                // A policy this sidecar does not serve: nothing to route.
                (None, _) => {}
            }
        }
        if !mismatched.is_empty() {
            tracing::warn!(
                policies = ?mismatched.keys().collect::<Vec<_>>(),
                "holding the last routing: this sidecar has another version of these policies than the controller"
            );
        }
        mismatched
    }

    /// Looks for reloaded policy files. When they changed, applies the last state pushed again
    /// (a rollout whose policy now matches the controller's takes its weights), and returns
    /// whether the fingerprints differ from those the open subscription reported, in which
    /// case the caller subscribes again.
    fn policies_changed(&self) -> bool {
        let hash = self.store.snapshot().loaded.hash.clone();
        let last = {
            let Ok(mut s) = self.status.lock() else {
                return false;
            };
            if s.policies_seen.as_deref() == Some(hash.as_str()) {
                return false;
            }
            let first = s.policies_seen.is_none();
            s.policies_seen = Some(hash);
            if first {
                return false;
            }
            s.last_state.clone()
        };
        if let Some(state) = last {
            let mismatched = self.route(&state);
            tracing::info!(
                version = state.version,
                held_back = mismatched.len(),
                "policies reloaded: the controller's last state applied again"
            );
            if let Ok(mut s) = self.status.lock() {
                s.mismatched = mismatched;
            }
        }
        let fingerprints = self.fingerprints();
        self.status
            .lock()
            .map(|s| s.reported.as_deref().is_some_and(|r| r != fingerprints))
            .unwrap_or(false)
    }

    fn contact(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.last_contact = Some(crate::clock::now());
        }
        self.metrics.staleness.set(0.0);
    }

    fn failed(&self, e: &FollowError) {
        self.metrics.errors.with_label_values(&[e.reason()]).inc();
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(e.to_string());
        }
    }

    fn set_connected(&self, connected: bool) {
        self.metrics.connected.set(i64::from(connected));
        if let Ok(mut s) = self.status.lock() {
            s.connected = connected;
        }
    }

    /// Updates `augur_controller_staleness_seconds` (called every second by [`Self::run`]).
    fn tick(&self) {
        if let Ok(s) = self.status.lock() {
            if let Some(t) = s.last_contact {
                self.metrics.staleness.set(t.elapsed().as_secs_f64());
            }
        }
    }

    /// Fetches and applies the current state, retrying until it succeeds or `within` passes.
    pub async fn initial_sync(&self, within: Duration) -> Result<(), FollowError> {
        let deadline = crate::clock::now() + within;
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = async {
                let (status, body) = self.get("/v1/fleet/state", None).await?;
                if status != 200 {
                    return Err(status_error(status));
                }
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| FollowError::Connect(e.to_string()))?
                    .to_bytes();
                let state = parse(&bytes)?;
                self.contact();
                self.apply(&state)
            }
            .await;
            match result {
                Ok(()) => {
                    if let Ok(mut s) = self.status.lock() {
                        s.synced_before_listening = true;
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.failed(&e);
                    if crate::clock::now() + backoff > deadline {
                        return Err(e);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Follows the controller until `shutdown` fires: a watch stream, reopened whenever lost.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        let mut ticker = tokio::time::interval(POLICY_CHECK);
        loop {
            let watched = tokio::select! {
                r = self.watch(&mut ticker) => r,
                _ = shutdown.changed() => return,
            };
            self.set_connected(false);
            match watched {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) => {
                    tracing::debug!(error = %e, "controller stream ended");
                    self.failed(&e);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            self.tick();
            // Disconnected, a reload still re-routes; the next subscription reports it.
            self.policies_changed();
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One watch stream: applies each state pushed until the stream ends or goes silent.
    async fn watch(&self, ticker: &mut tokio::time::Interval) -> Result<(), FollowError> {
        let path = format!("/v1/fleet/watch?node={}", self.node);
        // The files seen now are those reported: a reload from here on is a change.
        self.policies_changed();
        let fingerprints = self.fingerprints();
        let (status, mut body) = self.get(&path, Some(&fingerprints)).await?;
        if status != 200 {
            return Err(status_error(status));
        }
        if let Ok(mut s) = self.status.lock() {
            s.reported = Some(fingerprints);
        }
        self.set_connected(true);
        let mut pending = BytesMut::new();
        let mut last = crate::clock::now();
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                _ = ticker.tick() => {
                    self.tick();
                    if last.elapsed() > DEAD_AFTER {
                        return Err(FollowError::Silent(DEAD_AFTER));
                    }
                    if self.policies_changed() {
                        tracing::info!("policy versions changed: subscribing again to report them");
                        return Ok(());
                    }
                    continue;
                }
            };
            let Some(frame) = frame else {
                return Ok(());
            };
            let frame = frame.map_err(|e| FollowError::Connect(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            last = crate::clock::now();
            self.contact();
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line = pending.split_to(end + 1);
                let line = &line[..end];
                if line.trim_ascii().is_empty() {
                    continue;
                }
                // A bad push keeps the last good state; the stream goes on.
                let applied = parse_push(line).and_then(|push| match push {
                    Push::State(state) => self.apply(&state),
                    Push::Labels(labels) => {
                        let joined = self.join_labels(&labels);
                        tracing::debug!(
                            received = labels.labels.len(),
                            joined,
                            "labels from the controller"
                        );
                        Ok(())
                    }
                });
                if let Err(e) = applied {
                    tracing::warn!(error = %e, "refused a push from the controller; the last good routing stays");
                    self.failed(&e);
                }
            }
            if pending.len() > MAX_PUSH_BYTES {
                return Err(FollowError::Oversized);
            }
        }
    }

    /// A GET to the controller: status and body.
    async fn get(
        &self,
        path: &str,
        fingerprints: Option<&str>,
    ) -> Result<(u16, hyper::body::Incoming), FollowError> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| FollowError::Connect("timed out".into()))?
        .map_err(|e| FollowError::Connect(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FollowError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = http::Request::get(path).header("host", self.authority.as_str());
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(fingerprints) = fingerprints {
            request = request.header("x-augur-policies", fingerprints);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| FollowError::Connect(e.to_string()))?;
        let response = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| FollowError::Connect("no answer".into()))?
            .map_err(|e| FollowError::Connect(e.to_string()))?;
        Ok((response.status().as_u16(), response.into_body()))
    }
}

/// The follower as one of the proxy's background services.
pub struct FollowService(pub Arc<Follower>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FollowService {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

fn status_error(status: u16) -> FollowError {
    if status == 401 {
        FollowError::Unauthorized
    } else {
        FollowError::Status(status)
    }
}

fn parse_push(bytes: &[u8]) -> Result<Push, FollowError> {
    if bytes.len() > MAX_PUSH_BYTES {
        return Err(FollowError::Oversized);
    }
    serde_json::from_slice(bytes).map_err(|e| FollowError::Malformed(e.to_string()))
}

fn parse(bytes: &[u8]) -> Result<FleetState, FollowError> {
    if bytes.len() > MAX_PUSH_BYTES {
        return Err(FollowError::Oversized);
    }
    serde_json::from_slice(bytes).map_err(|e| FollowError::Malformed(e.to_string()))
}

/// The managed routes of a pushed rollout, with the header routes' matches from this
/// sidecar's own policy (the same version as the controller's: the fingerprints agree). A name
/// the policy does not define is left out and logged.
fn managed_routes(
    policy: &augur_policies::CanaryPolicy,
    r: &RolloutRouting,
) -> augur_rollout::sink::ManagedRoutes {
    let names: Vec<&str> = r.header_routes.iter().map(String::as_str).collect();
    let mirrors: Vec<(String, u8)> = r
        .mirror_routes
        .iter()
        .map(|m| (m.name.clone(), m.percent))
        .collect();
    // `step` is numbered from 1 on the wire.
    let step = r.step.and_then(|s| s.checked_sub(1));
    let routes = augur_rollout::spec::managed_routes(policy, step, &names, &mirrors);
    if routes.headers.len() != names.len() {
        tracing::warn!(policy = %r.policy, routes = ?names, "a header route the controller named is not in this sidecar's policy; left out");
    }
    routes
}

fn weights_of(r: &RolloutRouting) -> Weights {
    Weights {
        stable: r.stable_weight,
        canary: r.canary_weight,
    }
}
