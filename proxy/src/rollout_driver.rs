//! The rollout engine's driver ([`augur_rollout::driver::Driver`]) as one of the proxy's
//! background services, fed with the proxy's samples and its policy store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use augur_policies::PolicySet;
use augur_rollout::driver::{Driver, PolicyFeed};
use augur_rollout::sample::RoutedSample;
use augur_rollout::Rollouts;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::policy_store::PolicyStore;

impl PolicyFeed for PolicyStore {
    fn serving(&self, f: &mut dyn FnMut(&PolicySet, &str)) {
        let snapshot = self.snapshot();
        f(&snapshot.loaded.set, &snapshot.loaded.hash);
    }
}

/// The background service driving the proxy's own rollouts (single-proxy mode).
pub struct RolloutDriver {
    driver: Driver,
    samples: Mutex<Option<mpsc::Receiver<RoutedSample>>>,
}

impl RolloutDriver {
    /// A driver reading `samples` into `rollouts`, following `store`'s policy set; the saved
    /// rollouts are resumed and their weights set now, before any listener opens.
    pub fn new(
        rollouts: Arc<Rollouts>,
        store: Arc<PolicyStore>,
        samples: mpsc::Receiver<RoutedSample>,
    ) -> Self {
        Self {
            driver: Driver::new(rollouts, store),
            samples: Mutex::new(Some(samples)),
        }
    }

    /// Shows every sample to `observer` before the rollouts.
    #[must_use]
    pub fn with_observer(mut self, observer: augur_rollout::driver::Observer) -> Self {
        self.driver = self.driver.with_observer(observer);
        self
    }
}

#[async_trait]
impl BackgroundService for RolloutDriver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.samples.lock().ok().and_then(|mut s| s.take());
        if taken.is_none() {
            tracing::error!("rollout driver started twice; the second instance does nothing");
            return;
        }
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        self.driver.run(taken, stop).await;
    }
}
