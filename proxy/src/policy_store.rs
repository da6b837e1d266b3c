//! The serving policy set and its compiled routes, swapped atomically on reload.
//!
//! Requests read a [`Snapshot`] through `arc-swap` without locking; a reload builds a complete
//! new snapshot off the request path and swaps it in only when the files are valid. An invalid set
//! is rejected whole: the last good snapshot keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use arc_swap::{ArcSwap, ArcSwapOption};
use augur_inference::{ShadowConfig, ShadowModel};
use augur_policies::{Diagnostic, LoadError, LoadOptions, Loaded, PolicySet};

use crate::metrics::Metrics;
use crate::route::{CompileError, RouteTable};

/// One loaded, validated and compiled policy set.
pub struct Snapshot {
    /// The validated policy set, its warnings, sources and hash.
    pub loaded: Loaded,
    /// The compiled routes.
    pub routes: RouteTable,
    /// The embedded shadow models, by CanaryPolicy key (`namespace/name`).
    pub shadows: HashMap<String, Arc<ShadowHandle>>,
    /// Shadow models that could not be loaded (the routes serve without them).
    pub shadow_errors: Vec<String>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("hash", &self.loaded.hash)
            .field("shadows", &self.shadows.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A loaded shadow model and the policy settings it was loaded from.
pub struct ShadowHandle {
    /// The CanaryPolicy's `shadow` block.
    pub config: augur_policies::Shadow,
    /// The model and its worker pool.
    pub model: ShadowModel,
}

/// Why a policy set could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The files are invalid.
    #[error("invalid policy:\n{0}")]
    Invalid(#[from] LoadError),
    /// The routes could not be compiled.
    #[error("cannot compile routes: {0}")]
    Compile(#[from] CompileError),
}

/// A rejected reload, kept for the admin config dump.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadFailure {
    /// Unix time of the attempt.
    pub at_unix: u64,
    /// Every diagnostic, one line each (`file:line:column: path: message`).
    pub errors: Vec<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are unchanged (same hash): nothing to swap.
    Unchanged,
    /// A new set is serving; its hash.
    Applied(String),
    /// The new files were rejected; the previous set keeps serving.
    Rejected,
}

/// Called with the serving and the new policy set just before a reload swaps the new one in.
pub type BeforeSwap = Box<dyn Fn(&PolicySet, &PolicySet) + Send + Sync>;

/// Holds the serving snapshot and reloads it from the policy paths.
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    options: LoadOptions,
    current: ArcSwap<Snapshot>,
    last_failure: ArcSwapOption<ReloadFailure>,
    metrics: Arc<Metrics>,
    before_swap: std::sync::OnceLock<BeforeSwap>,
    live_weights: std::sync::OnceLock<Arc<crate::weights::RolloutWeights>>,
}

impl PolicyStore {
    /// Loads the initial set; the proxy does not start without a valid one.
    pub fn open(paths: Vec<PathBuf>, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        Self::open_with(paths, LoadOptions::default(), metrics)
    }

    /// [`PolicyStore::open`] with loader options, kept for every reload.
    pub fn open_with(
        paths: Vec<PathBuf>,
        options: LoadOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let snapshot = build(&paths, options, None)?;
        metrics
            .config_last_reload_success_timestamp
            .set(unix_seconds(snapshot.loaded_at) as i64);
        Ok(Self {
            paths,
            options,
            current: ArcSwap::from_pointee(snapshot),
            last_failure: ArcSwapOption::empty(),
            metrics,
            before_swap: std::sync::OnceLock::new(),
            live_weights: std::sync::OnceLock::new(),
        })
    }

    /// Runs `hook` with the serving and the new set before each reload swaps the new one in
    /// (the rollouts hold a changed release's traffic on stable there: see
    /// [`augur_rollout::release::hold_changed_releases`]). Set once; later calls are ignored.
    pub fn set_before_swap(&self, hook: BeforeSwap) {
        if self.before_swap.set(hook).is_err() {
            tracing::warn!("a policy swap hook is already set");
        }
    }

    /// The weights the rollouts set, so that a reload that edits the written weights of a route a
    /// running rollout drives is warned about (the rollout's weights keep applying). Set once.
    pub fn set_live_weights(&self, weights: Arc<crate::weights::RolloutWeights>) {
        if self.live_weights.set(weights).is_err() {
            tracing::warn!("the live weights are already set");
        }
    }

    /// The serving snapshot (one atomic reference count; no lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The last rejected reload, if the latest attempt failed.
    pub fn last_failure(&self) -> Option<Arc<ReloadFailure>> {
        self.last_failure.load_full()
    }

    /// The watched policy paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Reads the files again and swaps in the new set when it is valid and different.
    /// Blocking (file reads, DNS): call it off the async worker threads.
    pub fn reload(&self) -> ReloadOutcome {
        self.metrics.config_reloads.inc();
        let previous = self.current.load_full();
        match build(&self.paths, self.options, Some(&previous)) {
            Ok(mut snapshot) => {
                self.metrics.config_last_reload_successful.set(1);
                self.last_failure.store(None);
                if snapshot.loaded.hash == self.current.load().loaded.hash {
                    return ReloadOutcome::Unchanged;
                }
                let hash = snapshot.loaded.hash.clone();
                if let Some(live) = self.live_weights.get() {
                    let edits = edited_driven_weights(&previous.loaded.set, &snapshot.loaded, live);
                    snapshot.loaded.warnings.extend(edits);
                }
                for w in &snapshot.loaded.warnings {
                    tracing::warn!(diagnostic = %w, "policy warning");
                }
                self.metrics
                    .config_last_reload_success_timestamp
                    .set(unix_seconds(snapshot.loaded_at) as i64);
                if let Some(hook) = self.before_swap.get() {
                    hook(&previous.loaded.set, &snapshot.loaded.set);
                }
                self.current.store(Arc::new(snapshot));
                tracing::info!(hash = %hash, "policy reloaded");
                ReloadOutcome::Applied(hash)
            }
            Err(e) => {
                self.metrics.config_reload_failures.inc();
                self.metrics.config_last_reload_successful.set(0);
                let errors = error_lines(&e);
                for line in &errors {
                    tracing::error!(diagnostic = %line, "policy rejected; the last good policy keeps serving");
                }
                self.last_failure.store(Some(Arc::new(ReloadFailure {
                    at_unix: unix_seconds(SystemTime::now()),
                    errors,
                })));
                ReloadOutcome::Rejected
            }
        }
    }
}

fn build(
    paths: &[PathBuf],
    options: LoadOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, StoreError> {
    let loaded = augur_policies::load_paths_with(paths, options)?;
    // Keys that cannot be read reject the set, placed at the field that names them.
    let key_errors = crate::preflight::api_keys(&loaded);
    if !key_errors.is_empty() {
        let mut diagnostics = loaded.warnings.clone();
        diagnostics.extend(key_errors);
        return Err(StoreError::Invalid(LoadError { diagnostics }));
    }
    let routes = RouteTable::compile(&loaded.set)?;
    let (shadows, shadow_errors) = load_shadows(&loaded, previous);
    Ok(Snapshot {
        loaded,
        routes,
        shadows,
        shadow_errors,
        loaded_at: SystemTime::now(),
    })
}

/// Loads each CanaryPolicy's shadow model, reusing the previous snapshot's when its settings
/// are unchanged. A model that does not load is reported, not fatal: the primary path never
/// depends on the shadow.
fn load_shadows(
    loaded: &Loaded,
    previous: Option<&Snapshot>,
) -> (HashMap<String, Arc<ShadowHandle>>, Vec<String>) {
    let mut shadows = HashMap::new();
    let mut errors = Vec::new();
    for (index, policy) in loaded.set.canary_policies.iter().enumerate() {
        let Some(config) = &policy.shadow else {
            continue;
        };
        let key = crate::route::policy_key(policy);
        let reused = previous
            .and_then(|p| p.shadows.get(&key))
            .filter(|h| h.config == *config)
            .cloned();
        if let Some(handle) = reused {
            shadows.insert(key, handle);
            continue;
        }
        let runtime = &config.runtime;
        let settings = ShadowConfig {
            workers: runtime.workers as usize,
            queue_capacity: runtime.queue_capacity as usize,
            max_batch: runtime.max_batch as usize,
            max_batch_wait: runtime.max_batch_wait,
            intra_op_threads: runtime.intra_op_threads as usize,
            ..ShadowConfig::default()
        };
        match ShadowModel::from_policy(config, settings) {
            Ok(model) => {
                tracing::info!(policy = %key, model = %config.model, "shadow model loaded");
                let handle = ShadowHandle {
                    config: config.clone(),
                    model,
                };
                shadows.insert(key, Arc::new(handle));
            }
            Err(e) => {
                let line = crate::preflight::shadow_not_loaded(
                    loaded,
                    index,
                    &config.model,
                    &e.to_string(),
                )
                .to_string();
                tracing::warn!(policy = %key, diagnostic = %line, "shadow model not loaded; the route serves without it");
                errors.push(line);
            }
        }
    }
    (shadows, errors)
}

/// Warnings for the driven routes whose written stable/canary weights a reload changed while
/// their rollout holds live weights: the edit does not move traffic (the rollout's weights keep
/// applying), which would otherwise go unnoticed.
fn edited_driven_weights(
    old: &PolicySet,
    new: &Loaded,
    live: &crate::weights::RolloutWeights,
) -> Vec<Diagnostic> {
    augur_policies::driven::edited_weights(old, &new.set)
        .into_iter()
        .filter_map(|(before, after)| {
            let w = live.get(&after.policy)?;
            Some(new.diagnostic(
                augur_policies::DocumentRef::VirtualService(after.vs_index),
                &format!("spec.http[{}].route", after.route_index),
                augur_policies::Severity::Warning,
                format!(
                    "the stable/canary weights of route {} changed from {}/{} to {}/{}, but CanaryPolicy {} drives them: traffic stays at the rollout's {}/{} (use `augur rollout promote`, `abort` or `retry` to move it)",
                    after.route,
                    before.stable_weight,
                    before.canary_weight,
                    after.stable_weight,
                    after.canary_weight,
                    after.policy,
                    w.stable,
                    w.canary
                ),
            ))
        })
        .collect()
}

fn error_lines(e: &StoreError) -> Vec<String> {
    match e {
        StoreError::Invalid(load) => load.diagnostics.iter().map(Diagnostic::to_string).collect(),
        StoreError::Compile(c) => vec![c.to_string()],
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
