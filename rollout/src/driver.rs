//! The loop that drives the rollouts: feeds samples in, keeps them in step with policy
//! reloads, reads metric sources when due, and lets time pass once a second.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use augur_policies::PolicySet;
use tokio::sync::mpsc;

use crate::sample::{self, RoutedSample};
use crate::Rollouts;

/// How often rollouts are ticked (analysis intervals are whole seconds or more).
pub const TICK: Duration = Duration::from_secs(1);

/// How long samples gather in the queue between two wake-ups of the driver: at most this much
/// later reach the analysis and the triggers, and the queue (65,536) holds far more than this
/// many milliseconds of any request rate.
const SAMPLE_BATCH: Duration = Duration::from_millis(5);

/// After a sample was taken from `rx`: takes what else is queued, then lets samples gather for
/// [`SAMPLE_BATCH`]. One wake-up of the consuming thread per batch instead of one per request
/// (each a context switch beside the proxy's worker; see BENCHMARKS.md). The rollout driver and
/// a follower's evidence feed both consume samples this way.
pub async fn gather(rx: &mut mpsc::Receiver<RoutedSample>, mut each: impl FnMut(&RoutedSample)) {
    while let Ok(s) = rx.try_recv() {
        each(&s);
    }
    tokio::time::sleep(SAMPLE_BATCH).await;
}

/// Where the serving policy set comes from (the proxy's store, the controller's files).
pub trait PolicyFeed: Send + Sync {
    /// Calls `f` with the serving policy set and its hash.
    fn serving(&self, f: &mut dyn FnMut(&PolicySet, &str));
}

/// Sees every sample the driver takes, before the rollouts do (the proxy exports them as
/// evidence for a fleet's controller).
pub type Observer = Arc<dyn Fn(&RoutedSample) + Send + Sync>;

/// Drives the rollouts.
pub struct Driver {
    rollouts: Arc<Rollouts>,
    feed: Arc<dyn PolicyFeed>,
    observer: Option<Observer>,
    /// The hash of the policy set the rollouts were last synced with.
    synced: Mutex<String>,
}

impl Driver {
    /// A driver for `rollouts`, following `feed`'s policy set. It resumes the saved rollouts
    /// and sets their weights now, not when it starts running: made before the listeners open
    /// (or before the controller serves), no request after a restart is split at the
    /// VirtualService's weights and `/rollouts` is current at `/ready`.
    pub fn new(rollouts: Arc<Rollouts>, feed: Arc<dyn PolicyFeed>) -> Self {
        let driver = Self {
            rollouts,
            feed,
            observer: None,
            synced: Mutex::new(String::new()),
        };
        driver.sync();
        driver
    }

    /// Shows every sample to `observer` first.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, s: &RoutedSample) {
        if let Some(observer) = &self.observer {
            observer(s);
        }
        self.rollouts.observe(s);
    }

    /// Syncs the rollouts with the serving policy set when it changed.
    pub fn sync(&self) {
        let Ok(mut synced) = self.synced.lock() else {
            return;
        };
        self.feed.serving(&mut |set, hash| {
            if hash != synced.as_str() {
                self.rollouts.sync(set, hash, sample::now());
                *synced = hash.to_owned();
            }
        });
    }

    /// Runs until `shutdown` completes: samples (when this process records any) are fed as
    /// they come, and once a second the policy set is followed, due metric sources are read
    /// and every rollout ticks.
    pub async fn run(
        &self,
        mut samples: Option<mpsc::Receiver<RoutedSample>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let next_sample = async {
                match samples.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(s) = next_sample => {
                    self.observe(&s);
                    if let Some(rx) = samples.as_mut() {
                        gather(rx, |s| self.observe(s)).await;
                    }
                }
                _ = tick.tick() => {
                    self.sync();
                    let now = sample::now();
                    for due in self.rollouts.due_fetches(now) {
                        // A slow source must not hold up the other rollouts or the samples.
                        let rollouts = Arc::clone(&self.rollouts);
                        tokio::spawn(async move {
                            match due.source.read(due.window).await {
                                Ok(reading) => rollouts.feed(&due.policy, &reading),
                                Err(e) => rollouts.source_failed(&due.policy, due.window, &e),
                            }
                        });
                    }
                    self.rollouts.tick(now);
                }
                () = &mut shutdown => break,
            }
        }
    }
}
