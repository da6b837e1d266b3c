//! Graceful shutdown that tracks requests instead of sleeping a fixed time.
//!
//! On SIGTERM pingora stops accepting, closes idle keep-alive connections (`Connection: close`
//! on HTTP/1, GOAWAY on HTTP/2) and then waits its grace period, which augur sets to
//! `--drain-duration`. This service ends the wait early: once shutdown has begun it watches the
//! active-requests gauge and exits the process as soon as no request is in flight, so a drain
//! takes as long as the slowest in-flight request, and never longer than the drain duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntGauge;

/// Set by the admin's `POST /drain_listeners`: readiness fails and each kept-alive connection
/// is closed after its current response, so clients move to other pods before shutdown.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Starts draining (there is no way back, as in Envoy).
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether draining has started.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How often the in-flight count is checked while draining.
const POLL: Duration = Duration::from_millis(50);

/// Exits once shutdown has begun and nothing is in flight.
pub struct Drain {
    active: IntGauge,
}

impl Drain {
    /// A drain watching `active` (the proxy's in-flight requests).
    pub fn new(active: IntGauge) -> Self {
        Self { active }
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        tracing::info!(
            in_flight = self.active.get(),
            "draining: waiting for in-flight requests"
        );
        loop {
            if self.active.get() <= 0 {
                tracing::info!("drained: no request in flight; exiting");
                std::process::exit(0);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
