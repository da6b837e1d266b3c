//! The serving policy set and its compiled routes, swapped atomically on reload.
//!
//! Requests read a [`Snapshot`] through `arc-swap` without locking; a reload builds a complete
//! new snapshot off the request path and swaps it in only when the files are valid. An invalid set
//! is rejected whole: the last good snapshot keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use augur_policies::{Diagnostic, LoadError, Loaded};

use crate::metrics::Metrics;
use crate::route::{CompileError, RouteTable};

/// One loaded, validated and compiled policy set.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated policy set, its warnings, sources and hash.
    pub loaded: Loaded,
    /// The compiled routes.
    pub routes: RouteTable,
    /// When it was loaded.
    pub loaded_at: SystemTime,
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

/// Holds the serving snapshot and reloads it from the policy paths.
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    current: ArcSwap<Snapshot>,
    last_failure: ArcSwapOption<ReloadFailure>,
    metrics: Arc<Metrics>,
}

impl PolicyStore {
    /// Loads the initial set; the proxy does not start without a valid one.
    pub fn open(paths: Vec<PathBuf>, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let snapshot = build(&paths)?;
        metrics
            .config_last_reload_success_timestamp
            .set(unix_seconds(snapshot.loaded_at) as i64);
        Ok(Self {
            paths,
            current: ArcSwap::from_pointee(snapshot),
            last_failure: ArcSwapOption::empty(),
            metrics,
        })
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
        match build(&self.paths) {
            Ok(snapshot) => {
                self.metrics.config_last_reload_successful.set(1);
                self.last_failure.store(None);
                if snapshot.loaded.hash == self.current.load().loaded.hash {
                    return ReloadOutcome::Unchanged;
                }
                let hash = snapshot.loaded.hash.clone();
                for w in &snapshot.loaded.warnings {
                    tracing::warn!(diagnostic = %w, "policy warning");
                }
                self.metrics
                    .config_last_reload_success_timestamp
                    .set(unix_seconds(snapshot.loaded_at) as i64);
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

fn build(paths: &[PathBuf]) -> Result<Snapshot, StoreError> {
    let loaded = augur_policies::load_paths(paths)?;
    let routes = RouteTable::compile(&loaded.set)?;
    Ok(Snapshot {
        loaded,
        routes,
        loaded_at: SystemTime::now(),
    })
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
