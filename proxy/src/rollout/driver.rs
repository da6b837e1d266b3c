//! The background service that feeds samples to the rollouts, keeps them in step with policy
//! reloads, and lets time pass once a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::Rollouts;
use crate::policy_store::PolicyStore;
use crate::sample::{self, RoutedSample};

/// How often rollouts are ticked (analysis intervals are whole seconds or more).
pub const TICK: Duration = Duration::from_secs(1);

/// How long samples gather in the queue between two wake-ups of the driver: at most this much
/// later reach the analysis and the triggers, and the queue (65,536) holds far more than this
/// many milliseconds of any request rate.
const SAMPLE_BATCH: Duration = Duration::from_millis(5);

/// Drives the rollouts.
pub struct RolloutDriver {
    rollouts: Arc<Rollouts>,
    store: Arc<PolicyStore>,
    samples: Mutex<Option<mpsc::Receiver<RoutedSample>>>,
    /// The policy set hash the rollouts were synced with when the driver was made.
    synced: String,
}

impl RolloutDriver {
    /// A driver reading `samples` into `rollouts`, following `store`'s policy set. It resumes
    /// the saved rollouts and sets their weights now, not when its service starts: made before
    /// the server runs, it has them in place before any listener opens, so no request after a
    /// restart is split at the VirtualService's weights and `/rollouts` is current at `/ready`.
    pub fn new(
        rollouts: Arc<Rollouts>,
        store: Arc<PolicyStore>,
        samples: mpsc::Receiver<RoutedSample>,
    ) -> Self {
        let mut driver = Self {
            rollouts,
            store,
            samples: Mutex::new(Some(samples)),
            synced: String::new(),
        };
        let mut hash = String::new();
        driver.sync(&mut hash);
        driver.synced = hash;
        driver
    }

    fn sync(&self, last_hash: &mut String) {
        let snapshot = self.store.snapshot();
        if snapshot.loaded.hash != *last_hash {
            self.rollouts
                .sync(&snapshot.loaded.set, &snapshot.loaded.hash, sample::now());
            last_hash.clone_from(&snapshot.loaded.hash);
        }
    }
}

#[async_trait]
impl BackgroundService for RolloutDriver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.samples.lock().ok().and_then(|mut s| s.take());
        let Some(mut samples) = taken else {
            tracing::error!("rollout driver started twice; the second instance does nothing");
            return;
        };
        let mut last_hash = self.synced.clone();
        self.sync(&mut last_hash);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(s) = samples.recv() => {
                    self.rollouts.observe(&s);
                    // Take what else is queued, then let samples gather for a moment: one
                    // wake-up of this thread per batch instead of one per request (each is a
                    // context switch beside the proxy's worker; see BENCHMARKS.md).
                    while let Ok(s) = samples.try_recv() {
                        self.rollouts.observe(&s);
                    }
                    tokio::time::sleep(SAMPLE_BATCH).await;
                }
                _ = tick.tick() => {
                    self.sync(&mut last_hash);
                    let now = sample::now();
                    for due in self.rollouts.due_fetches(now) {
                        // A slow source must not hold up the other rollouts or the samples.
                        let rollouts = Arc::clone(&self.rollouts);
                        tokio::spawn(async move {
                            match due.source.fetch(due.window_s, now).await {
                                Ok(samples) => rollouts.feed(&due.policy, &samples),
                                Err(e) => rollouts.source_failed(&due.policy, &e),
                            }
                        });
                    }
                    self.rollouts.tick(now);
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
