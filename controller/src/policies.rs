//! The policy files the controller runs, reloaded when they change (a ConfigMap update, an
//! edit, `SIGHUP`): a valid set replaces the serving one whole; an invalid one is rejected,
//! logged and counted, and the last good set keeps running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use augur_policies::{LoadError, Loaded, PolicySet};
use augur_rollout::audit::{AuditLog, PolicyChange};
use augur_rollout::driver::PolicyFeed;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// How long the files must be quiet after a change before they are read again.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The serving policy set and where it came from.
pub struct PolicyFiles {
    paths: Vec<PathBuf>,
    serving: ArcSwap<Loaded>,
    reload_failures: prometheus::IntCounter,
    changed: watch::Sender<u64>,
    audit: Arc<AuditLog>,
}

impl PolicyFiles {
    /// Loads `paths`; fails with every diagnostic when they do not validate. The load, and every
    /// reload that applies or is rejected, is recorded in `audit`, as the proxy records its own.
    pub fn load(
        paths: Vec<PathBuf>,
        reload_failures: prometheus::IntCounter,
        audit: Arc<AuditLog>,
    ) -> Result<Self, LoadError> {
        let loaded = augur_policies::load_paths(&paths)?;
        audit.policy(&PolicyChange {
            trigger: "startup",
            outcome: "loaded",
            old_hash: None,
            new_hash: &loaded.hash,
            files: &loaded.sources,
            errors: &[],
        });
        let (changed, _) = watch::channel(0);
        Ok(Self {
            paths,
            serving: ArcSwap::from_pointee(loaded),
            reload_failures,
            changed,
            audit,
        })
    }

    /// The serving set.
    pub fn serving(&self) -> Arc<Loaded> {
        self.serving.load_full()
    }

    /// Wakes whenever a new set starts serving.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Reads the files again (`trigger`: `file change` or `SIGHUP`); a valid set with another
    /// hash replaces the serving one.
    pub fn reload(&self, trigger: &str) {
        let old = self.serving.load_full();
        match augur_policies::load_paths(&self.paths) {
            Ok(loaded) if loaded.hash == old.hash => {}
            Ok(loaded) => {
                tracing::info!(hash = %loaded.hash, files = loaded.sources.len(), "policy reloaded");
                self.audit.policy(&PolicyChange {
                    trigger,
                    outcome: "applied",
                    old_hash: Some(&old.hash),
                    new_hash: &loaded.hash,
                    files: &loaded.sources,
                    errors: &[],
                });
                self.serving.store(Arc::new(loaded));
                self.changed.send_modify(|n| *n += 1);
            }
            Err(e) => {
                self.reload_failures.inc();
                let errors: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
                for d in &errors {
                    tracing::error!(diagnostic = %d, "policy reload rejected; the last good policy keeps running");
                }
                self.audit.policy(&PolicyChange {
                    trigger,
                    outcome: "rejected",
                    old_hash: Some(&old.hash),
                    new_hash: &old.hash,
                    files: &old.sources,
                    errors: &errors,
                });
            }
        }
    }

    /// Reloads on file changes and `SIGHUP` until `shutdown` turns true.
    pub async fn watch(&self, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let _watcher = augur_rollout::watch::watch(&self.paths, tx)
            .map_err(|e| tracing::error!(error = %e, "cannot watch the policy files; reload on SIGHUP only"))
            .ok();
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP"))
            .ok();
        loop {
            tokio::select! {
                Some(()) = events.recv() => {
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
                    self.reload("file change");
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload("SIGHUP");
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl PolicyFeed for PolicyFiles {
    fn serving(&self, f: &mut dyn FnMut(&PolicySet, &str)) {
        let loaded = self.serving.load();
        f(&loaded.set, &loaded.hash);
    }
}
