//! Hot reload: watches the policy paths (and listens for SIGHUP) and reloads the store.
//!
//! Directories are watched recursively and single files through their parent directory, because
//! editors and Kubernetes ConfigMap updates replace files by rename (`..data` symlink swaps).
//! Events are debounced so that a burst of writes makes one reload; the store compares hashes so
//! an event that changed nothing swaps nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::audit::{AuditLog, PolicyChange};
use crate::policy_store::{PolicyStore, ReloadOutcome};

/// How long to wait after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The background service that drives reloads.
pub struct Reloader {
    store: Arc<PolicyStore>,
    audit: Arc<AuditLog>,
}

impl Reloader {
    /// A reloader for the store's paths.
    pub fn new(store: Arc<PolicyStore>) -> Self {
        Self {
            store,
            audit: Arc::new(AuditLog::tracing_only()),
        }
    }

    /// Records every applied or rejected reload in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    async fn reload(&self, trigger: &'static str) {
        let store = Arc::clone(&self.store);
        let audit = Arc::clone(&self.audit);
        let reload = move || {
            let old = store.snapshot().loaded.hash.clone();
            let outcome = store.reload();
            let serving = store.snapshot();
            let failure = store.last_failure();
            let (name, errors) = match &outcome {
                ReloadOutcome::Unchanged => return outcome,
                ReloadOutcome::Applied(_) => ("applied", &[][..]),
                ReloadOutcome::Rejected => (
                    "rejected",
                    failure.as_deref().map_or(&[][..], |f| f.errors.as_slice()),
                ),
            };
            audit.policy(&PolicyChange {
                trigger,
                outcome: name,
                old_hash: Some(&old),
                new_hash: &serving.loaded.hash,
                files: &serving.loaded.sources,
                errors,
            });
            outcome
        };
        match tokio::task::spawn_blocking(reload).await {
            Ok(outcome) => tracing::debug!(trigger, ?outcome, "policy reload"),
            Err(e) => tracing::error!(trigger, error = %e, "policy reload task failed"),
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on file changes only");
                None
            }
        };
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let _watcher = match augur_rollout::watch::watch(self.store.paths(), tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the policy files; reload on SIGHUP only");
                None
            }
        };
        loop {
            tokio::select! {
                Some(()) = events.recv() => {
                    // Debounce: wait until the files have been quiet for DEBOUNCE.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
                    self.reload("file change").await;
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    tracing::info!("SIGHUP: reloading policies");
                    self.reload("SIGHUP").await;
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
